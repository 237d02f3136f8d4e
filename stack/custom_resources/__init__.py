"""Lambda code of the stack's own custom resources: one asset directory each (not handlers/, which is the
pipeline's asset). Each directory is standalone: it imports nothing from this repository."""
