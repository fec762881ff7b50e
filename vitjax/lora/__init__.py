"""LoRA: low-rank adapters on vitjax's Dense layers, trained through the usual optimizer and
exported merged (a plain Hugging Face model) or alone in PEFT's format.

Modules: `config` (`config.lora` and its checks), `model` (`LoRAModel`: adapters added by a flax
method interceptor, `merge`), `peft` (PEFT's adapter files, both ways; `load_pretrained(base,
adapter)`), `run` (what a training run does with `config.lora` set).
"""
