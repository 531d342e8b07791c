"""Storyboard templates that `storyreel new --template NAME` starts a film from."""
