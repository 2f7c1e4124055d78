"""Constants shared by every layer of the package (imported from here, defined nowhere else)."""

IGNORE_INDEX = -100
"""Label value that losses skip: PyTorch's ``cross_entropy`` default ``ignore_index`` and transformers' convention."""

MODEL_TYPES = ("bert", "roberta", "distilbert", "electra", "albert")
"""The model families (config.json's ``model_type``) bertforge loads and saves, on its one encoder: the names only,
for the layers below the model; each family's entry is in ``model/families.py``."""

BASELINES = ("tfidf",)
"""Baselines fine-tuning and GLUE evaluation can report beside the model (``tasks/baseline.py``)."""
