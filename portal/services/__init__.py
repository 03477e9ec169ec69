"""Domain operations: no request, no templates. Views and commands call these."""
