"""The AirLLM benchmark (`BENCH=bench-airllm make bench`; docs/benchmarks.md, docs/airllm.md).

1. The tiny model, with and without layer splitting: the same greedy generations through
   `airllm.AutoModel` (one layer at a time from its shards) and through plain transformers (the
   whole model in memory), each engine in a fresh process so that its peak memory is its own.
   Rounds alternate the engines; each reports tokens per second per question and the process's
   peak resident memory, and the memory the model added once loaded (resident after loading minus
   resident after importing torch and transformers). Medians over rounds.
2. A 7B-class model on paper, by AirLLM's own accounting: Llama-2-7B's configuration built on
   PyTorch's meta device (no memory, no download), split into the modules AirLLM streams (its
   `layer_names`: embedding, each decoder layer, final norm, head), each module's bytes at 16 bits
   and after AirLLM's 8-bit and 4-bit compression (the ratios its own `check_space` uses). What
   AirLLM holds at once is the largest module, twice with prefetching (the next one is read while
   the current one runs); plain inference holds them all.

    python bench.py --model DIR [--rounds 3] [--questions 4]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def resident(key: str = "VmRSS") -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


def worker(engine: str, model: str, questions: list[str], shards: str, window: int) -> None:
    """One engine in this process: prints one JSON line of figures."""
    import torch
    import transformers  # noqa: F401

    torch.set_num_threads(1)
    before = resident()
    if engine == "airllm":
        from airllm import AutoModel

        wrapper = AutoModel.from_pretrained(model, device="cpu", dtype=torch.float32, layer_shards_saving_path=shards,
                                            max_seq_len=window + 128)
        generator, tokenizer = wrapper.model, wrapper.tokenizer
    else:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model)
        generator = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
        generator.eval()
    loaded = resident()
    rates = []
    for question in questions:
        messages = [{"role": "system", "content": "Answer from the passages."},
                    {"role": "user", "content": "Passages:\n<passages>\n</passages>\n\nQuestion: " + question}]
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        if hasattr(ids, "keys"):
            ids = ids["input_ids"]
        input_ids = torch.tensor([list(ids)[-window:]])
        started = time.perf_counter()
        with torch.inference_mode():
            output = generator.generate(input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=16,
                                        do_sample=False, pad_token_id=tokenizer.pad_token_id)
        elapsed = time.perf_counter() - started
        generated = output.shape[-1] - input_ids.shape[-1]
        rates.append(generated / elapsed)
    print(json.dumps({
        "engine": engine, "tokens_per_second": statistics.median(rates),
        "peak_resident": resident("VmHWM"), "model_added": loaded - before,
    }))


def on_paper() -> list[dict[str, float]]:
    """Llama-2-7B by AirLLM's module split, in bytes."""
    import torch
    from accelerate import init_empty_weights
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                         num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096,
                         tie_word_embeddings=False)
    with init_empty_weights():
        model = LlamaForCausalLM(config)
    # AirLLM's layer_names_dict for Llama-architecture models (airllm_base.set_layer_names_dict).
    names = ["model.embed_tokens"] + [f"model.layers.{i}" for i in range(32)] + ["model.norm", "lm_head"]
    sizes = []
    for name in names:
        module = model.get_submodule(name)
        sizes.append(sum(p.numel() for p in module.parameters()) * 2)  # 16-bit weights
    whole = sum(sizes)
    rows = []
    # The ratios AirLLM's check_space applies to shard sizes under compression.
    for label, ratio in (("16-bit", 1.0), ("8-bit", 0.5), ("4-bit", 0.2813)):
        largest = max(sizes) * ratio
        rows.append({
            "weights": label, "whole_model": whole * ratio, "largest_module": largest,
            "largest_layer": max(sizes[1:-2]) * ratio,
            # Prefetching is off under compression in AirLLM.
            "airllm_in_flight": largest * (2 if ratio == 1.0 else 1),
        })
    del torch
    return rows


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=False)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--questions", type=int, default=4)
    parser.add_argument("--worker", choices=("airllm", "standard"))
    parser.add_argument("--shards")
    parser.add_argument("--window", type=int, default=64)
    arguments = parser.parse_args()
    answers = json.loads(Path(arguments.model, "answers.json").read_text())
    questions = [a["question"] for a in answers][: arguments.questions]
    if arguments.worker:
        worker(arguments.worker, arguments.model, questions, arguments.shards, arguments.window)
        return 0

    print(f"machine: {os.cpu_count()} cores; torch threads 1; {len(questions)} questions, 16 new tokens each, "
          f"{arguments.rounds} rounds alternating the engines", flush=True)
    results: dict[str, list[dict]] = {"airllm": [], "standard": []}
    with tempfile.TemporaryDirectory() as shards:
        for round_number in range(arguments.rounds):
            order = ("airllm", "standard") if round_number % 2 == 0 else ("standard", "airllm")
            for engine in order:
                output = subprocess.run(
                    [sys.executable, __file__, "--worker", engine, "--model", arguments.model, "--shards", shards,
                     "--questions", str(arguments.questions), "--window", str(arguments.window)],
                    capture_output=True, text=True, check=True)
                figures = json.loads(output.stdout.strip().splitlines()[-1])
                results[engine].append(figures)
                print(f"round {round_number + 1} {engine}: {figures['tokens_per_second']:.1f} tokens/s, "
                      f"peak {figures['peak_resident'] / 2**20:.0f} MiB, model added "
                      f"{figures['model_added'] / 2**20:.1f} MiB", flush=True)
    mib = 2 ** 20
    summary = {}
    for engine, rows in results.items():
        summary[engine] = {key: statistics.median(r[key] for r in rows)
                           for key in ("tokens_per_second", "peak_resident", "model_added")}
    ratios = [a["tokens_per_second"] / s["tokens_per_second"] for a, s in zip(results["airllm"], results["standard"])]
    print("\ntiny model (328k parameters, 1.3 MB of weights), medians:")
    for engine in ("airllm", "standard"):
        s = summary[engine]
        print(f"  {engine:8s} {s['tokens_per_second']:7.1f} tokens/s   peak resident {s['peak_resident'] / mib:6.0f} MiB"
              f"   model added {s['model_added'] / mib:6.1f} MiB")
    print(f"  AirLLM's speed relative to standard, median of per-round ratios: {statistics.median(ratios):.3f}")
    print("\nLlama-2-7B by AirLLM's module split (on paper):")
    for row in on_paper():
        print(f"  {row['weights']:6s} whole model {row['whole_model'] / 2**30:6.2f} GiB   largest module "
              f"{row['largest_module'] / mib:6.0f} MiB   largest decoder layer {row['largest_layer'] / mib:5.0f} MiB"
              f"   AirLLM holds ~{row['airllm_in_flight'] / mib:5.0f} MiB of weights at once")
    return 0


if __name__ == "__main__":
    sys.exit(main())
