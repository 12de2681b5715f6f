import sys
from pathlib import Path

# Test helpers (e.g. openapi_schemas) live next to this file and are imported by name.
sys.path.insert(0, str(Path(__file__).resolve().parent))
