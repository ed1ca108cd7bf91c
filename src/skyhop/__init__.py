"""skyhop: an intercloud broker."""
