"""Studies and paper reproductions: built on the library layers, never imported by them."""
