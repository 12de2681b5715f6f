import sys
from pathlib import Path

# The benchmark package (bench/) lives at the repository root and is not installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
