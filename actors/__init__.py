"""Ray actors of a run: plain classes here, wired to Ray only in ftdojo.runtime."""
