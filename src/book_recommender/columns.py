"""Columns the pipelines add. Columns of the input data come from parameters."""

USER_IDX = "_user_id"
ITEM_IDX = "_item_id"
ROW_ID = "id"
PREDICTION = "prediction"
