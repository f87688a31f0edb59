"""`pd_nb demo` (the README's main job) end to end at test sizes: teacher, soft labels, the five recipes, table and chart."""
import json, subprocess, sys
from pathlib import Path

def test_demo_writes_table_and_chart(tmp_path):
    r = subprocess.run([str(Path(sys.executable).parent / 'pd_nb'), 'demo', '--tiny', '--out', str(tmp_path)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((tmp_path / 'demo_results.json').read_text())
    assert [row['model'] for row in res['rows']] == ['teacher (MiniLM 6/384)', 'Basic', 'Distillation', 'PF', 'PD', 'PD-F']
    assert all(0.0 <= row['dev_accuracy'] <= 1.0 for row in res['rows'])
    assert (tmp_path / 'demo_results.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert 'PD-F' in r.stdout and 'dev_accuracy' in r.stdout
    for name in ('basic', 'distillation', 'pf', 'pd', 'pd_f'):
        assert (tmp_path / 'runs' / f'{name}_seed0' / 'model.safetensors').exists()
