"""The secret scanner (`keystead scan`): provider and keystead keys in files, stdin or git
history, with few false positives. See docs/scanner.md."""

from keystead.scan.detectors import DETECTORS, Detector
from keystead.scan.scanner import Finding, ScanStats, scan_bytes, scan_paths, scan_text

__all__ = ["DETECTORS", "Detector", "Finding", "ScanStats", "scan_bytes", "scan_paths",
           "scan_text"]
