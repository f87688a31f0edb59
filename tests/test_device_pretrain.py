"""The GPU pre-training chunk (`bench/device_pretrain.sh`) run on CPU at toy size: packed tokens in, a clean stop
after its minutes, a second call that resumes, and fp16 weights packed into pieces that load back."""
import io, json, lzma, os, shutil, subprocess, sys, tarfile
from pathlib import Path
import numpy as np, pytest, torch
from safetensors.torch import load
from pd_nb.core import repo_root, minilm_dir
from pd_nb.data import build_lm_memmap, get_tokenizer

def tar_bytes(data: bytes, name: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar: return tar.extractfile(name).read()

def test_device_pretrain_chunks(tmp_path, monkeypatch):
    root = repo_root(); monkeypatch.setenv('PD_NB_CACHE', str(tmp_path / 'cache'))
    mm = build_lm_memmap('sample', get_tokenizer(), 128)
    gdata = tmp_path / 'gpu_data'; gdata.mkdir()
    with lzma.open(gdata / 'lm_L128_gpu.memmap.xz', 'wb') as f: f.write(np.asarray(mm).tobytes())
    shutil.copy(Path(mm.filename).with_suffix('.json'), gdata / 'lm_L128_gpu.json')
    env = dict(os.environ, PD_NB_GPU_DATA=str(gdata), PD_NB_GPU_RUNS=str(tmp_path / 'runs'), PD_NB_TOKENIZER=str(minilm_dir()),
               PYTHON=sys.executable, OMP_NUM_THREADS='1',
               PRETRAIN_FLAGS='--batch-size 4 --max-steps 100000 --valid-rows 8 --warmup 2 --precision fp32')
    steps = []
    for call in range(2):
        out = tmp_path / f'out{call}'
        r = subprocess.run(['bash', 'bench/device_pretrain.sh', str(out), '0.01', 'tiny:tiny'], cwd=root, env=env,
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        data = b''.join((out / f'gpu_runs.tar.part_{i}').read_bytes() for i in range(len(list(out.glob('gpu_runs.tar.part_*')))))
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            names = tar.getnames()
            sd = load(tar.extractfile('tiny/model.safetensors').read())
            metrics = json.loads(tar.extractfile('tiny/pretrain_metrics.json').read())
        assert {'tiny/config.json', 'tiny/run/log.jsonl', 'tiny/manifest.json'} <= set(names)
        assert all(v.dtype == torch.float16 for v in sd.values() if v.is_floating_point())
        assert metrics['completed'] is False and metrics['steps'] >= 20        # stopped by the clock, at a checked step
        steps.append(metrics['steps'])
        assert (out / 'console_tiny.txt').exists() and (out / 'console_env.txt').exists()
        subprocess.run(['bash', 'bench/unpack_gpu_runs.sh', str(out), str(tmp_path / f'unpacked{call}')], cwd=root, check=True)
        assert (tmp_path / f'unpacked{call}' / 'tiny' / 'model.safetensors').stat().st_size == len(tar_bytes(data, 'tiny/model.safetensors'))
    assert steps[1] > steps[0]                                                # the second call resumed the first
