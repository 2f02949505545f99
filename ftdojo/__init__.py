"""ftdojo: FT-Dojo (a benchmark environment for autonomous fine-tuning) and FT-Agent."""

__version__ = "0.1.0"
