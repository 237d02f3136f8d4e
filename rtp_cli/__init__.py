"""The `rtp` command line: synth, check, deploy, diff, destroy, status for every environment."""
