"""Domain code of the pipeline: plain functions and small classes the thin Lambda handlers call.

Nothing here knows about Lambda events; everything takes plain values and boto3 clients, so it is
unit-tested directly against moto.
"""
