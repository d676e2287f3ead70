"""Columns the pipelines add. Columns of the input data come from parameters."""

USER_IDX = "_user_id"
ITEM_IDX = "_item_id"
ROW_ID = "id"
PREDICTION = "prediction"
COLD_START = "cold_start"  # served the popular fallback: the model cannot rank them
SERVED = "served"  # a user's served books, in rank order
