"""The experiment runner's claim on each run: two `pd_nb experiment` processes on one plan split it, and a claim left by
a process that died is taken over."""
import json, multiprocessing, os, socket, subprocess, time
import pytest
from pd_nb.experiments import Budget, Experiment, register, run_experiment, EXPERIMENTS


def toy(name, n, log_file=None, pause=0.0, fail=()):
    "A registered experiment of `n` runs that train nothing: each appends '<run> <pid>' to `log_file` and sleeps `pause`."
    def make(i):
        def fn():
            if f'r{i}' in fail: raise RuntimeError(f'r{i} failed')
            if log_file:
                with open(log_file, 'a') as f: f.write(f'r{i} {os.getpid()}\n')
            time.sleep(pause)
            return {'recipe': 'Toy', 'dev_accuracy': 0.5 + i / 100}
        return fn
    return register(Experiment(name, 'a toy plan', lambda b: [(f'r{i}', make(i)) for i in range(n)]))


@pytest.fixture
def cleanup():
    names = []
    yield names
    for n in names: EXPERIMENTS.pop(n, None)


def claim(path, pid, host=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({'pid': pid, 'host': host or socket.gethostname(), 'started': 'earlier'}))


def test_a_run_claimed_by_a_live_process_is_left_to_it(tmp_path, cleanup):
    toy('toy_live', 3); cleanup.append('toy_live')
    claim(tmp_path / 'toy_live' / 'r1.lock', os.getpid())                         # this very process: alive
    res = run_experiment('toy_live', Budget(results_dir=str(tmp_path)), log=None)
    assert res['trained'] == ['r0', 'r2'] and res['busy'] == ['r1'] and not (tmp_path / 'toy_live' / 'r1.json').exists()
    assert (tmp_path / 'toy_live' / 'r1.lock').exists()                            # not ours to remove
    assert sorted(p.name for p in (tmp_path / 'toy_live').iterdir()) == ['r0.json', 'r1.lock', 'r2.json']


def test_a_claim_left_by_a_dead_process_or_another_host_and_a_failing_run(tmp_path, cleanup):
    toy('toy_dead', 3, fail=('r2',)); cleanup.append('toy_dead')
    dead = subprocess.Popen(['true']); dead.wait()                                 # a pid that no longer runs
    claim(tmp_path / 'toy_dead' / 'r0.lock', dead.pid)
    claim(tmp_path / 'toy_dead' / 'r1.lock', 1, host='another-machine')              # cannot be checked from here: left alone
    with pytest.raises(RuntimeError, match='r2 failed'):
        run_experiment('toy_dead', Budget(results_dir=str(tmp_path)), log=None)
    names = sorted(p.name for p in (tmp_path / 'toy_dead').iterdir())
    assert names == ['r0.json', 'r1.lock'], names                                  # r2's claim is released when it fails


def _worker(name, results_dir):
    run_experiment(name, Budget(results_dir=results_dir), log=None)


def test_two_processes_on_one_plan_train_every_run_once(tmp_path, cleanup):
    log = tmp_path / 'trained.txt'
    toy('toy_two', 8, log_file=str(log), pause=0.2); cleanup.append('toy_two')
    ctx = multiprocessing.get_context('fork')                                      # the children see the registered toy
    procs = [ctx.Process(target=_worker, args=('toy_two', str(tmp_path))) for _ in range(2)]
    for p in procs: p.start()
    for p in procs: p.join(60)
    assert all(p.exitcode == 0 for p in procs)
    runs = [l.split()[0] for l in log.read_text().splitlines()]
    assert sorted(runs) == [f'r{i}' for i in range(8)]                            # every run once, none twice
    assert sorted(p.name for p in (tmp_path / 'toy_two').iterdir()) == [f'r{i}.json' for i in range(8)]
    res = run_experiment('toy_two', Budget(results_dir=str(tmp_path)), log=None)  # a third call reads all back
    assert res['trained'] == [] and len(res['skipped']) == 8
