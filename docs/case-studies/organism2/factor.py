"""Effect estimate vs real patch on the full-size organism: heads and neurons, log p vs logit difference."""
import json, os, sys, time
import torch
torch.set_num_threads(1)
from neuroscope.organisms import data
from neuroscope.organisms.generation import load_checked
from neuroscope.organisms.localise import backdoor_pairs
from neuroscope.analysis.effects import EffectConfig, rank_effects
folder, trigger, response, out = sys.argv[1:5]
n = int(sys.argv[5]) if len(sys.argv) > 5 else 12
m = load_checked(folder)
t0 = time.time()
pairs = backdoor_pairs(m, list(data.questions().validation[:n]), trigger, response, 0)
res = {"n_pairs": n, "model": folder}
for metric in ("logprob", "logit_diff"):
    t1 = time.time()
    r = rank_effects(m, pairs, None, EffectConfig(top=5, kinds=("head", "neuron"), validation=0.5, metric=metric, batch_size=4))
    rows = [{"label": e.label, "predicted_val": e.predicted_val, "actual": e.actual,
             "ratio": (e.actual / e.predicted_val) if e.predicted_val else None} for e in r.heads + r.neurons]
    res[metric] = {"metric_triggered": r.metric_triggered, "metric_clean": r.metric_clean, "units": rows,
                   "seconds": round(time.time() - t1, 1)}
    print(metric, r.metric_triggered, r.metric_clean, flush=True)
    for x in rows: print("  ", x, flush=True)
res["load_avg"] = list(os.getloadavg()); res["seconds"] = round(time.time() - t0, 1)
json.dump(res, open(out, "w"), indent=1)
