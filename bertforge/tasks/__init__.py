"""Fine-tuning task families (classification, NER, extractive QA), shared by fine-tuning and the pipelines: reading the
files, features (one tokenized window each), head arguments, evaluation (metrics and prediction records)."""
