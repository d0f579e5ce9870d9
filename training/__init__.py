"""The training stage: one model per (family, region) from its snapshot, logged and registered in MLflow
as the pair's challenger.
"""
