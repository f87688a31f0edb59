"""Shared pytest setup: offline hubs, a small torch thread count (CI has 2 cores), IN_TEST for notebooks."""
import os
os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('HF_DATASETS_OFFLINE', '1')
os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')
os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')
os.environ['IN_TEST'] = '1'
import torch
torch.set_num_threads(1)
