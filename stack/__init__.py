"""The one CDK stack of the pipeline and its constructs. Never imports `handlers/` (the Lambda asset)."""
