"""`vasa eval`: measure talking-face videos (ours or any method's) and write a report."""
