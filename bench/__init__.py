"""``make bench``: figures for issue 14, measured in one run on the same rows and files."""
