"""Shared pytest setup: offline hubs, a small torch thread count (CI has 2 cores), IN_TEST for notebooks."""
import os
os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('HF_DATASETS_OFFLINE', '1')
os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')
os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')
os.environ['IN_TEST'] = '1'
import torch
torch.set_num_threads(1)

import tempfile
import pytest


@pytest.fixture(scope='session', autouse=True)
def temp_folders_under_pytest(tmp_path_factory):
    """Every temporary folder a test or a chapter under test makes (`tempfile.mkdtemp`, also in subprocesses through
    TMPDIR) lands under pytest's own base folder, which pytest prunes (it keeps the last three sessions): the chapters'
    scratch runs no longer pile up in /tmp."""
    d = tmp_path_factory.mktemp('tempfile')
    old_dir, old_env = tempfile.tempdir, os.environ.get('TMPDIR')
    tempfile.tempdir, os.environ['TMPDIR'] = str(d), str(d)
    yield d
    tempfile.tempdir = old_dir
    if old_env is None: os.environ.pop('TMPDIR', None)
    else: os.environ['TMPDIR'] = old_env
