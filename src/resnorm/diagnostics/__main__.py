"""``python -m resnorm.diagnostics``: print the at-init Post-LN vs Pre-LN comparison."""

from __future__ import annotations

from resnorm.diagnostics.inspect import inspect_comparison

if __name__ == "__main__":
    print(inspect_comparison())
