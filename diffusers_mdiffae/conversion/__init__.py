"""Published checkpoint layouts -> this package's classes, strictly."""
