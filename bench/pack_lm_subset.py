"""Cut the packed Wikipedia+Gutenberg D_LM (seq 128) to what a GPU call can carry: N random training rows (seeded,
in corpus order) followed by the same 1000 held-out rows every run evaluates on (the corpus's last rows)."""
import json, sys, numpy as np
from pathlib import Path
src = Path(sys.argv[1]); n = int(sys.argv[2]); out = Path(sys.argv[3])
info = json.loads(src.with_suffix('.json').read_text())
mm = np.memmap(src, dtype=info['dtype'], mode='r', shape=(info['n_seqs'], info['seq_len']))
held = 1000
idx = np.sort(np.random.default_rng(0).choice(len(mm) - held, n, replace=False))
rows = np.concatenate([mm[idx], mm[-held:]])
rows.tofile(out)
sub = dict(info, n_seqs=len(rows), n_tokens=int(len(rows) * (info['seq_len'] - 2)), stream_tokens=None, dropped_tail=None,
           subset_of=dict(key=info['key'], n_seqs=info['n_seqs'], n_tokens=info['n_tokens'], train_rows=n, seed=0,
                          held_out_rows=held, how='random training rows (numpy default_rng(0), sorted), then the last 1000 rows'))
out.with_suffix('.json').write_text(json.dumps(sub, indent=1))
print(len(rows), 'rows', rows.nbytes / 1e6, 'MB')
