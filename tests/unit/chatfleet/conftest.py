"""The chatfleet package is run from the repository root (python -m chatfleet): import it from there."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
