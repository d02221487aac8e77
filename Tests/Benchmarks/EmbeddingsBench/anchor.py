"""The anchor of bench-embeddings (issue 20): the same all-MiniLM-L6-v2 in PyTorch, run the way
sentence-transformers runs it (transformers' BertModel, mean pooling over the real tokens, L2
normalisation), on the same questions, in the same `make bench` run. Prints the figures in the
Swift benchmark's terms: one question on one and on two threads, batches of 32 questions.

Runs in the AirLLM sidecar's environment (PyTorch and transformers, cached per machine).
Usage: python anchor.py MODEL_DIR
"""
import os
import statistics
import sys
import time
import warnings

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
warnings.filterwarnings("ignore")

import torch  # noqa: E402
from transformers import AutoTokenizer, BertModel  # noqa: E402

QUESTIONS = [
    "How does the scalar coherence field couple to gravity in the unified model?",
    "Which experiments would falsify the predicted dark matter interaction cross section?",
    "What is the role of the Lagrangian density in deriving the field equations here?",
    "Is the claimed vacuum energy suppression proven, derived, modeled or conjectural?",
]

directory = sys.argv[1]
tokenizer = AutoTokenizer.from_pretrained(directory)
model = BertModel.from_pretrained(directory, add_pooling_layer=False).eval()


def embed(texts):
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        states = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
    pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, dim=1)


for threads in (1, 2):
    torch.set_num_threads(threads)
    for _ in range(30):
        embed([QUESTIONS[0]])
    times = []
    for index in range(300):
        start = time.perf_counter()
        embed([QUESTIONS[index % len(QUESTIONS)]])
        times.append((time.perf_counter() - start) * 1000)
    print(f"PyTorch {torch.__version__}, one question, {threads} thread(s): p50 {statistics.median(times):.2f} ms")
    batch = [QUESTIONS[i % len(QUESTIONS)] for i in range(32)]
    embed(batch)
    rounds = 20
    start = time.perf_counter()
    for _ in range(rounds):
        embed(batch)
    print(f"PyTorch, batch 32 questions, {threads} thread(s): {32 * rounds / (time.perf_counter() - start):.0f} /s")
