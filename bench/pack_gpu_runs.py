"""Pack what a GPU pre-training chunk must bring back into pieces the device tool returns (≤ 15 MiB each).

usage: python bench/pack_gpu_runs.py RUNS OUT SIZE:NAME ...
Per run: config.json and the final weights in fp16 (half the file; config.json keeps float32, so loaders upcast),
pretrain_metrics.json, manifest.json, run/log.jsonl and every milestones/*/milestone.json. The full training state
stays on the machine (RUNS/NAME/run/checkpoints) for the next chunk there."""
import io, json, sys, tarfile
from pathlib import Path
import torch
from safetensors.torch import load_file, save

def add(tar, name, data: bytes):
    info = tarfile.TarInfo(name); info.size = len(data); tar.addfile(info, io.BytesIO(data))

def main(runs, out, specs, piece=15 << 20):
    runs, out = Path(runs), Path(out); buf = io.BytesIO(); packed = {}
    with tarfile.open(fileobj=buf, mode='w') as tar:
        for spec in specs:
            name = spec.split(':')[-1]; d = runs / name; files = []
            if not (d / 'model.safetensors').exists(): print(f"{name}: no final weights in {d}", file=sys.stderr); continue
            sd = {k: v.half() if v.is_floating_point() else v for k, v in load_file(d / 'model.safetensors').items()}
            add(tar, f'{name}/model.safetensors', save(sd, metadata={'format': 'pt'})); files.append('model.safetensors')
            for rel in ['config.json', 'pretrain_metrics.json', 'manifest.json', 'run/log.jsonl',
                        *[str(p.relative_to(d)) for p in sorted(d.glob('milestones/*/milestone.json'))]]:
                if (d / rel).exists(): add(tar, f'{name}/{rel}', (d / rel).read_bytes()); files.append(rel)
            packed[name] = files
    data = buf.getvalue()
    for i in range(0, len(data), piece): (out / f'gpu_runs.tar.part_{i // piece}').write_bytes(data[i:i + piece])
    print(json.dumps({'bytes': len(data), 'pieces': -(-len(data) // piece), 'runs': packed}))

if __name__ == '__main__': main(sys.argv[1], sys.argv[2], sys.argv[3:])
