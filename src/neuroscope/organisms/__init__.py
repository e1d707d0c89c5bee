"""Model organisms: models fine-tuned on purpose to carry a known behaviour (a backdoor, a refusal), and the
case studies that check NeuroScope's tools find and remove what was put in.

- :mod:`neuroscope.organisms.data`: the shipped prompt sets, prompt files, triggers and near-miss triggers
- :mod:`neuroscope.organisms.make`: ``make_backdoor`` / ``make_refuser`` (LoRA fine-tunes, merged, saved)
- :mod:`neuroscope.organisms.metrics`: Wilson and bootstrap intervals, attack success, refusal detection
- :mod:`neuroscope.organisms.evaluate`: attack success by trigger position, near misses, clean agreement and KL
- :mod:`neuroscope.organisms.refusal`: the refusal direction case study
- :mod:`neuroscope.organisms.backdoor`: the backdoor case study (before, baselines; feature steps plug in)
"""
