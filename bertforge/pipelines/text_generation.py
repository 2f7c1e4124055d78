"""Text generation from a causal checkpoint: ``pipeline("text-generation", model=DIR)("The river")``."""

from __future__ import annotations

from typing import Any

from bertforge.generation import check_causal, generate
from bertforge.model import BertLMHeadModel
from bertforge.pipelines.base import Option, Pipeline, check_number, check_texts


class TextGenerationPipeline(Pipeline):
    """Each prompt ([CLS] + its tokens) extended by ``generate``; returns [{"generated_text": prompt + new text}] per
    prompt (the text as the tokenizer decodes it: lower-cased by an uncased vocabulary)."""

    task = "text-generation"
    model_class = BertLMHeadModel
    head = "cls.predictions."
    head_hint = "use a checkpoint pretrained with --objective clm"
    cli_options = (
        Option("--max-new-tokens", "tokens to generate", int, minimum=1),
        Option("--do-sample", "sample (default: greedy)", bool),
        Option("--temperature", "sampling temperature", float, minimum=1e-6),
        Option("--top-k", "sample among the K likeliest tokens (0: off)", int, minimum=0),
        Option("--top-p", "nucleus sampling: keep the smallest set reaching P", float, minimum=1e-6, maximum=1.0),
        Option("--seed", "seed of the sampler (prompt i uses seed + i)", int, minimum=0, maximum=2**32 - 1),
        Option(
            "--no-cache",
            "recompute every position each step (for comparison)",
            bool,
            keyword="use_cache",
            value=lambda v: not v,
        ),
    )

    def __init__(self, model: Any, tokenizer: Any = None, **kwargs):
        from bertforge.hub import resolve_model
        from bertforge.model import BertConfig

        if isinstance(model, str) or hasattr(model, "__fspath__"):
            path = resolve_model(model)
            check_causal(BertConfig.from_pretrained(path), what=str(model))
        else:
            check_causal(model.config)
        super().__init__(model, tokenizer, **kwargs)

    def __call__(
        self,
        inputs: str | list[str],
        max_new_tokens: int = 32,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        seed: int | None = None,
        use_cache: bool = True,
        return_full_text: bool = True,
    ):
        single = isinstance(inputs, str)
        texts: list[str] = [inputs] if isinstance(inputs, str) else list(inputs)
        check_texts(texts, "prompt")
        check_number("top_k", top_k, 0)  # generate() checks the other numbers
        results = []
        for i, text in enumerate(texts):
            prompt = self.tokenizer.encode(text, add_special_tokens=False)
            prompt = [self.tokenizer.cls_token_id] + prompt
            new = generate(
                self.model,
                prompt,
                max_new_tokens,
                do_sample,
                temperature,
                top_k,
                top_p,
                None if seed is None else seed + i,
                self.tokenizer.sep_token_id,
                use_cache,
            )
            body = (prompt[1:] if return_full_text else []) + new
            results.append([{"generated_text": self.tokenizer.decode(body, skip_special_tokens=True)}])
        return results[0] if single else results
