"""One blueprint per audience; views are thin and call services."""
