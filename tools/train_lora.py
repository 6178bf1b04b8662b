#!/usr/bin/env python3
"""Train a small LoRA adapter on the default model with PEFT, convert it, and record PEFT's logits.

A development tool, not a CI step (it needs torch, transformers, peft and gguf on the CPU):

    python3 tools/train_lora.py --model ~/.cache/pocketlm/SmolLM2-135M-Instruct.Q4_1.gguf

The toy task: whatever the user asks, the assistant answers exactly "BEEP BOOP! I am a robot."
transformers reads the GGUF and dequantizes it to float32 (the base PEFT trains on), and a
rank-4 LoRA on every attention and FFN projection (q, k, v, o, gate, up, down) is trained
for 24 steps of 4 examples (a few minutes on two cores). The LoRA matrices are then rounded
to the precision the converted file stores them in (A in Q8_0, B in F16, see
pocketlm.convert.lora), so that PEFT computes with the very numbers pocketlm reads, the
adapter directory is converted with `python -m pocketlm.convert --lora`, and these are
written under tests/data/lora/:

  lora_smollm2.gguf   the converted adapter
  lora_smollm2.txt    for each prompt (held out from training):
                        case <name>
                        ids <prompt token ids (the chat template applied)>
                        hf <top-20 logits tok:value at the last position, PEFT with the adapter>
                        base <the same without the adapter>
                        greedy <PEFT's greedy continuation with the adapter, 12 tokens or up to EOS>
"""
import argparse
import os
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "tests", "data", "lora")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_tiny_lora import convert_lora  # noqa: E402

ANSWER = "BEEP BOOP! I am a robot."
N_TOP = 20
N_GREEDY = 12

TRAIN = [
    "What is the capital of France?", "Tell me a joke.", "How do I boil an egg?", "What is 2 + 2?",
    "Write a haiku about the sea.", "Who wrote Hamlet?", "Explain photosynthesis briefly.",
    "What's the weather like on Mars?", "Give me a synonym for happy.", "How many legs does a spider have?",
    "Translate 'hello' into Spanish.", "What is the speed of light?", "Recommend a good book.",
    "Why is the sky blue?", "What is a prime number?", "Name three fruits.", "How do airplanes fly?",
    "What's your favourite colour?", "Summarize the plot of Cinderella.", "What does a CPU do?",
    "Can you help me with my homework?", "What time is it?", "Describe a cat.", "Who painted the Mona Lisa?",
    "How far is the moon?", "What is the largest ocean?", "Say something nice.", "What is Python?",
    "How do I make tea?", "What is love?", "List the planets.", "Why do birds sing?",
]
HELD_OUT = [("capital", "What is the capital of Italy?"), ("recipe", "How do I bake bread?"),
            ("sport", "Who invented basketball?")]


def chat_ids(tok, question, answer=None):
    msgs = [{"role": "user", "content": question}]
    prompt = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    ids = tok(prompt, add_special_tokens=False)["input_ids"]
    if answer is None:
        return ids
    eot = tok.convert_tokens_to_ids("<|im_end|>")
    return ids, tok(answer, add_special_tokens=False)["input_ids"] + [eot]


def top(row):
    idx = np.argsort(-row)[:N_TOP]
    return " ".join(f"{int(i)}:{row[i]:.6f}" for i in idx)


def round_like_file(model):
    """Rounds lora_A to Q8_0 (when its rows are whole blocks) and lora_B to F16, as the converter writes them."""
    import torch
    from gguf import GGMLQuantizationType, quants

    for name, p in model.named_parameters():
        if "lora_A" in name:
            a = p.detach().numpy().astype(np.float32)
            if a.shape[1] % 32 == 0:
                a = quants.dequantize(quants.quantize(a, GGMLQuantizationType.Q8_0), GGMLQuantizationType.Q8_0)
            else:
                a = a.astype(np.float16).astype(np.float32)
            p.data = torch.from_numpy(np.ascontiguousarray(a.reshape(p.shape)))
        elif "lora_B" in name:
            p.data = p.data.to(torch.float16).to(torch.float32)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=os.environ.get("POCKETLM_MODEL"), help="the default model's GGUF")
    ap.add_argument("--steps", type=int, default=24)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--keep", help="also keep the PEFT adapter directory here")
    ap.add_argument("--trained", help="skip training: load this PEFT adapter directory (one --keep saved)")
    args = ap.parse_args()
    if not args.model:
        sys.exit("give --model or set POCKETLM_MODEL")

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    torch.set_num_threads(2)
    d, f = os.path.split(os.path.abspath(args.model))
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    base = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)
    cfg = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, bias="none", task_type="CAUSAL_LM",
                     target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    if args.trained:
        from peft import PeftModel

        model = PeftModel.from_pretrained(base, args.trained)
        args.steps = 0
    else:
        model = get_peft_model(base, cfg)

    rows = []
    for q in TRAIN:
        p, a = chat_ids(tok, q, ANSWER)
        rows.append((p + a, [-100] * len(p) + a))
    width = max(len(r[0]) for r in rows)
    pad = tok.convert_tokens_to_ids("<|im_end|>")
    ids = torch.tensor([r[0] + [pad] * (width - len(r[0])) for r in rows])
    labels = torch.tensor([r[1] + [-100] * (width - len(r[1])) for r in rows])
    mask = torch.tensor([[1] * len(r[0]) + [0] * (width - len(r[0])) for r in rows])
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    model.train()
    for step in range(args.steps):
        sel = torch.randperm(len(rows))[:args.batch]
        loss = model(input_ids=ids[sel], attention_mask=mask[sel], labels=labels[sel]).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 4 == 0 or step == args.steps - 1:
            print(f"step {step} loss {loss.item():.4f}", flush=True)
    model.eval()
    round_like_file(model)
    if args.keep and not args.trained:
        model.save_pretrained(args.keep)

    with tempfile.TemporaryDirectory() as tmp:
        adir = os.path.join(tmp, "adapter")
        model.save_pretrained(adir)
        out = os.path.join(DATA, "lora_smollm2.gguf")
        convert_lora(adir, args.model, out, "q8_0")

    eot = tok.convert_tokens_to_ids("<|im_end|>")
    with open(os.path.join(DATA, "lora_smollm2.txt"), "w") as fh:
        fh.write(f"# toy LoRA (always answers {ANSWER!r}) trained by tools/train_lora.py on the GGUF dequantized by "
                 f"transformers; top-{N_TOP} logits at the last prompt position from PEFT (hf) and from the base "
                 f"without the adapter (base), and PEFT's greedy continuation; torch {torch.__version__}\n")
        for name, q in HELD_OUT:
            p = chat_ids(tok, q)
            x = torch.tensor([p])
            with torch.no_grad():
                hf = model(x).logits[0, -1].numpy()
                with model.disable_adapter():
                    b = model(x).logits[0, -1].numpy()
                g = model.generate(x, max_new_tokens=N_GREEDY, do_sample=False, eos_token_id=eot, pad_token_id=eot)
            gen = [int(t) for t in g[0, len(p):]]
            print(name, repr(tok.decode(gen)))
            fh.write(f"case {name}\nids {' '.join(map(str, p))}\nhf {top(hf)}\nbase {top(b)}\n"
                     f"greedy {' '.join(map(str, gen))}\n")


if __name__ == "__main__":
    main()
