"""Training code for the models the runtime loads (the ``train`` extra: peft); the runtime never imports it.

* :mod:`promptzip.training.classifier` — ``promptzip train token-classifier`` (``minilm-tc``)
* :mod:`promptzip.training.encoder` — ``promptzip train qa-encoder`` (``minilm-qa``)
* :mod:`promptzip.training.soft` — ``promptzip train soft-encoder`` (``soft-minilm-smollm2``)
* :mod:`promptzip.training.cli` — the ``promptzip train`` command line (also ``python -m promptzip.training``)

LoRA is trained with peft and saved in the adapter layout the runtime merges at load time
(:mod:`promptzip.training._lora`); data sets come through one module, :mod:`promptzip.training._data`.
"""
