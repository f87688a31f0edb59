"""pd_nb.bert against independent references: the paper's table, Hugging Face's BERT (weights copied by
position, not through pd_nb.hub), torch's own cross-entropy, and hand-computed properties."""
import math
import pytest
import torch
import torch.nn.functional as F
import transformers
from pd_nb.core import BertConfig, all_student_configs, bert_param_count, paper_params_m, PAPER_TRUNCATED, set_seed
from pd_nb.bert import BertModel, BertForMaskedLM, BertForSequenceClassification, BertOutput, count_params

TOY = BertConfig(n_layers=2, hidden=48, n_heads=3, ffn=96, vocab_size=120, max_positions=32, n_labels=3)

def hf_config(cfg: BertConfig, **kw) -> transformers.BertConfig:
    return transformers.BertConfig(vocab_size=cfg.vocab_size, hidden_size=cfg.hidden, num_hidden_layers=cfg.n_layers,
                                   num_attention_heads=cfg.n_heads, intermediate_size=cfg.ffn, max_position_embeddings=cfg.max_positions,
                                   type_vocab_size=cfg.type_vocab_size, num_labels=cfg.n_labels, **kw)

def copy_by_position(ours, theirs):
    "Copy HF weights into ours pairing state_dict entries in order (both list embeddings, q, k, v, out, LN, FFN, LN, pooler...)."
    so, st = ours.state_dict(), theirs.state_dict()
    assert len(so) == len(st)
    new = {}
    for (ko, vo), (kt, vt) in zip(so.items(), st.items()):
        assert vo.shape == vt.shape, (ko, kt)
        new[ko] = vt
    ours.load_state_dict(new)
    return ours

def batch(vocab, B=3, T=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab, (B, T), generator=g)
    am = torch.ones(B, T, dtype=torch.long); am[1, 12:] = 0; am[2, 5:] = 0
    tt = torch.zeros(B, T, dtype=torch.long); tt[:, T // 2:] = 1
    return ids.masked_fill(am == 0, 0), am, tt * am

def test_param_counts_match_closed_form_paper_and_hf():
    for cfg in all_student_configs():
        with torch.device('meta'):
            ours = count_params(BertForMaskedLM(cfg))
            clf = count_params(BertForSequenceClassification(cfg))
            hf = transformers.BertForPreTraining(hf_config(cfg))
        hf_n = sum(p.numel() for p in hf.parameters()) - (2 * cfg.hidden + 2)  # minus the next-sentence head
        assert ours == bert_param_count(cfg) == hf_n
        assert clf == bert_param_count(cfg, mlm_head=False) + cfg.hidden * cfg.n_labels + cfg.n_labels
        paper = paper_params_m(cfg.n_layers, cfg.hidden)
        assert abs(ours / 1e6 - paper) < 0.1
        assert (round(ours / 1e6, 1) == paper) == ((cfg.n_layers, cfg.hidden) not in PAPER_TRUNCATED)

def test_hand_worked_tiny_count():
    # 2/128 by hand: embeddings (30522+512+2)*128 + 256; layer 4*(128*128+128)+256 + 2*128*512+512+128+256; pooler; MLM head
    emb = (30522 + 512 + 2) * 128 + 256
    layer = 4 * (128 * 128 + 128) + 256 + (128 * 512 + 512 + 512 * 128 + 128 + 256)
    n = emb + 2 * layer + (128 * 128 + 128) + (128 * 128 + 128 + 256 + 30522)
    assert n == 4_433_210
    with torch.device('meta'): assert count_params(BertForMaskedLM(BertConfig(2, 128))) == n

@pytest.mark.parametrize('attn', ['eager', 'sdpa'])
def test_encoder_matches_hf(attn):
    set_seed(0)
    hf = transformers.BertModel(hf_config(TOY, attn_implementation=attn, initializer_range=0.2)).eval()  # large weights: sharper test
    ours = copy_by_position(BertModel(TOY), hf).eval()
    ids, am, tt = batch(TOY.vocab_size)
    with torch.no_grad():
        o, h = ours(ids, am, tt), hf(input_ids=ids, attention_mask=am, token_type_ids=tt)
    real = am.bool()
    assert (o.last_hidden_state - h.last_hidden_state)[real].abs().max() < 1e-5
    assert (o.pooler_output - h.pooler_output).abs().max() < 1e-5

def test_classifier_matches_hf_logits_and_loss():
    set_seed(1)
    hf = transformers.BertForSequenceClassification(hf_config(TOY, attn_implementation='eager', initializer_range=0.2)).eval()
    ours = copy_by_position(BertForSequenceClassification(TOY), hf).eval()
    ids, am, tt = batch(TOY.vocab_size)
    y = torch.tensor([0, 2, 1])
    with torch.no_grad():
        o, h = ours(ids, am, tt, labels=y), hf(input_ids=ids, attention_mask=am, token_type_ids=tt, labels=y)
    assert isinstance(o, BertOutput) and o.logits.shape == (3, 3)
    assert (o.logits - h.logits).abs().max() < 1e-5 and abs(o.loss - h.loss) < 1e-5

def test_sparse_mlm_head_equals_dense_and_torch_loss():
    set_seed(2)
    m = BertForMaskedLM(TOY).eval()
    ids, am, tt = batch(TOY.vocab_size)
    labels = torch.full_like(ids, -100)
    pos = (torch.rand(ids.shape) < 0.2) & am.bool(); pos[0, 1] = True
    labels[pos] = ids[pos]
    with torch.no_grad():
        dense, sparse = m(ids, am, tt), m(ids, am, tt, labels=labels)
    assert dense.logits.shape == (*ids.shape, TOY.vocab_size) and dense.loss is None
    assert sparse.logits.shape == (int(pos.sum()), TOY.vocab_size)
    assert torch.allclose(sparse.logits, dense.logits[pos], atol=1e-6)
    ref = F.cross_entropy(dense.logits.reshape(-1, TOY.vocab_size), labels.reshape(-1), ignore_index=-100)
    assert torch.allclose(sparse.loss, ref, atol=1e-6)
    with torch.no_grad():  # no masked position: a zero loss, not NaN
        empty = m(ids, am, tt, labels=torch.full_like(ids, -100))
    assert empty.logits.shape == (0, TOY.vocab_size) and empty.loss.item() == 0.0

def test_decoder_is_tied_to_word_embeddings():
    m = BertForMaskedLM(TOY)
    assert sum(p.shape == (TOY.vocab_size, TOY.hidden) for p in m.parameters()) == 1  # one V x H matrix
    ids = torch.full((1, 4), 7); labels = torch.tensor([[-100, 99, -100, -100]])
    m(ids, labels=labels).loss.backward()
    g = m.bert.embeddings.word.weight.grad
    assert g[99].abs().sum() > 0  # token 99 is never input: its gradient comes through the tied decoder only

def test_padding_does_not_change_real_positions():
    set_seed(3)
    m = BertForMaskedLM(TOY).eval()
    ids = torch.randint(1, TOY.vocab_size, (1, 9))
    padded = torch.cat([ids, torch.zeros(1, 7, dtype=torch.long)], 1)
    am = torch.cat([torch.ones(1, 9), torch.zeros(1, 7)], 1).long()
    with torch.no_grad():
        assert (m(ids).logits - m(padded, am).logits[:, :9]).abs().max() < 1e-5

def test_init_is_berts():
    set_seed(4)
    m = BertForMaskedLM(BertConfig(n_layers=2, hidden=128))
    w = m.bert.layers[0].ffn.up.weight
    assert abs(w.std().item() - 0.02) < 0.001 and abs(w.mean().item()) < 0.001
    assert abs(m.bert.embeddings.word.weight[1:].std().item() - 0.02) < 0.001
    assert m.bert.embeddings.word.weight[0].abs().sum() == 0  # [PAD] row
    assert (m.bert.layers[1].attn.q.bias == 0).all() and (m.mlm.bias == 0).all()
    assert (m.bert.layers[1].attn_norm.weight == 1).all() and (m.mlm.norm.bias == 0).all()

def test_soft_labels_and_regression():
    set_seed(5)
    m = BertForSequenceClassification(TOY).eval()
    ids, am, tt = batch(TOY.vocab_size)
    p = torch.softmax(torch.randn(3, 3), -1)
    with torch.no_grad(): o = m(ids, am, tt, labels=p)
    manual = -(p * torch.log_softmax(o.logits, -1)).sum(-1).mean()
    assert torch.allclose(o.loss, manual, atol=1e-6)
    r = BertForSequenceClassification(BertConfig(**{**TOY.__dict__, 'n_labels': 1})).eval()
    y = torch.tensor([0.5, -1.0, 2.0])
    with torch.no_grad(): o = r(ids, am, tt, labels=y)
    assert o.logits.shape == (3, 1) and torch.allclose(o.loss, ((o.logits[:, 0] - y) ** 2).mean())

def test_dropout_only_in_train_mode():
    set_seed(6)
    m = BertForSequenceClassification(TOY)
    ids, am, tt = batch(TOY.vocab_size)
    with torch.no_grad():
        a, b = m(ids, am, tt).logits, m(ids, am, tt).logits
        m.eval(); c, d = m(ids, am, tt).logits, m(ids, am, tt).logits
    assert not torch.equal(a, b) and torch.equal(c, d)

def test_bad_inputs():
    m = BertModel(TOY)
    with pytest.raises(ValueError, match='exceeds'): m(torch.zeros(1, 33, dtype=torch.long))
    with pytest.raises(ValueError, match='attention_mask'): m(torch.zeros(2, 5, dtype=torch.long), torch.ones(2, 4))

def test_overfits_a_tiny_batch():
    set_seed(0)
    cfg = BertConfig(n_layers=1, hidden=32, n_heads=2, vocab_size=30, max_positions=8, dropout=0.0, attn_dropout=0.0)
    m = BertForMaskedLM(cfg)
    ids = torch.randint(5, 30, (4, 8)); labels = torch.full_like(ids, -100); labels[:, 2] = ids[:, 2]
    inp = ids.clone(); inp[:, 2] = 4
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2)
    first = None
    for _ in range(60):
        loss = m(inp, labels=labels).loss
        first = first or loss.item()
        opt.zero_grad(); loss.backward(); opt.step()
    assert abs(first - math.log(30)) < 0.3 and loss.item() < 0.05

def test_vocab_cross_entropy_equals_cross_entropy_of_full_logits_with_gradients():
    "The fused, chunked head+loss against F.cross_entropy(F.linear(...)) in fp32, and under bf16 autocast."
    import torch.nn.functional as F
    from pd_nb.bert import vocab_cross_entropy
    torch.manual_seed(0)
    x, W, b = torch.randn(300, 32, requires_grad=True), (0.3 * torch.randn(2000, 32)).requires_grad_(), torch.randn(2000, requires_grad=True)
    y = torch.randint(2000, (300,))
    def run(f, ac):
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=ac): loss = f()
        loss.backward(); g = [t.grad.clone() for t in (x, W, b)]
        for t in (x, W, b): t.grad = None
        return loss.item(), g
    ref, gref = run(lambda: F.cross_entropy(F.linear(x, W, b), y), False)
    ours, g = run(lambda: vocab_cross_entropy(x, W, b, y, chunk=64), False)       # 5 equal chunks of 60 rows
    assert abs(ours - ref) < 1e-5 and all(torch.allclose(u, v, atol=1e-5) for u, v in zip(g, gref))
    ours16, g16 = run(lambda: vocab_cross_entropy(x, W, b, y, chunk=64), True)
    ref16, gref16 = run(lambda: F.cross_entropy(F.linear(x, W, b).float(), y), True)
    assert abs(ours16 - ref) < 0.05 and abs(ours16 - ref16) < 0.05
    for u, v in zip(g16, gref): assert ((u - v).norm() / v.norm()) < 0.02     # bf16 matmuls: about 3 significant digits

def test_vocab_cross_entropy_chunks_cover_every_row_whatever_the_count():
    "Equal chunks of at most `chunk` rows: 1, chunk - 1, chunk, chunk + 1 and a prime number of rows, against the full loss."
    import torch.nn.functional as F
    from pd_nb.bert import vocab_cross_entropy
    torch.manual_seed(2)
    W, b = torch.randn(500, 8), torch.randn(500)
    for n in (1, 15, 16, 17, 97):
        x, y = torch.randn(n, 8, requires_grad=True), torch.randint(500, (n,))
        ours = vocab_cross_entropy(x, W, b, y, chunk=16); ours.backward()
        xr = x.detach().clone().requires_grad_(); ref = F.cross_entropy(F.linear(xr, W, b), y); ref.backward()
        assert abs(ours.item() - ref.item()) < 1e-5 and torch.allclose(x.grad, xr.grad, atol=1e-6), n
    with pytest.raises(ValueError, match='chunk must be at least 1, got 0'):
        vocab_cross_entropy(torch.randn(3, 8), W, b, torch.zeros(3, dtype=torch.long), chunk=0)

def test_vocab_cross_entropy_is_exact_where_the_target_probability_underflows():
    "Rows whose target softmax probability underflows fp32 (loss > 69) take the logsumexp path: same loss and gradients."
    import torch.nn.functional as F
    from pd_nb.bert import vocab_cross_entropy
    torch.manual_seed(1)
    x = (torch.randn(50, 16) * torch.tensor([0.5, 40.0]).repeat(25)[:, None]).requires_grad_(); W = torch.randn(700, 16, requires_grad=True); b = torch.zeros(700, requires_grad=True)
    y = torch.randint(700, (50,))
    with torch.no_grad(): far = F.log_softmax(F.linear(x, W, b).double(), 1).gather(1, y[:, None])[:, 0] < -69.1
    assert 0 < int(far.sum()) < 50                                     # both paths taken
    ref = F.cross_entropy(F.linear(x.double(), W.double(), b.double()), y); ref.backward()
    gref = [t.grad.clone() for t in (x, W, b)]
    for t in (x, W, b): t.grad = None
    ours = vocab_cross_entropy(x, W, b, y, chunk=16); ours.backward()
    assert torch.isfinite(ours) and abs(ours.item() - ref.item()) < 1e-4 * ref.item()
    for t, g in zip((x, W, b), gref): assert torch.allclose(t.grad, g, atol=1e-5)

def test_masked_lm_training_forward_is_the_fused_loss_and_eval_keeps_logits():
    from pd_nb.core import student_config
    from pd_nb.bert import BertForMaskedLM
    torch.manual_seed(0)
    m = BertForMaskedLM(student_config('tiny', dropout=0.0, attn_dropout=0.0)).train()
    x = torch.randint(1000, 30000, (3, 20)); y = torch.full_like(x, -100); y[:, 3:7] = x[:, 3:7]
    train = m(x, labels=y)
    with torch.no_grad(): ev = m(x, labels=y)
    assert train.logits is None and ev.logits.shape == (12, 30522)
    assert abs(train.loss.item() - ev.loss.item()) < 1e-5

def test_cpu_attention_matches_the_fused_kernel_with_padding_and_gradients():
    import torch.nn.functional as F
    from pd_nb.bert import attention
    torch.manual_seed(0)
    q, k, v = (torch.randn(3, 2, 9, 16, requires_grad=True) for _ in range(3))
    mask = torch.ones(3, 1, 1, 9, dtype=torch.bool); mask[1, ..., 5:] = False; mask[2, ..., 2:] = False
    a = attention(q, k, v, mask); ga = torch.autograd.grad(a.square().sum(), (q, k, v))
    b = F.scaled_dot_product_attention(q, k, v, attn_mask=mask); gb = torch.autograd.grad(b.square().sum(), (q, k, v))
    assert torch.allclose(a, b, atol=1e-5) and all(torch.allclose(x, y, atol=1e-4) for x, y in zip(ga, gb))


def _tiny_mlm():
    from pd_nb.core import BertConfig, set_seed
    from pd_nb.bert import BertForMaskedLM
    set_seed(0)
    return BertForMaskedLM(BertConfig(n_layers=1, hidden=32, n_heads=2, ffn=64, vocab_size=200, max_positions=32, dropout=0.0, attn_dropout=0.0))

def test_static_head_gives_the_same_loss_and_gradients():
    "`max_predictions` (gather k positions per row, ignore the unmasked) = the boolean-indexed fused head, rows of unequal counts too."
    m = _tiny_mlm()
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 200, (4, 32), generator=g); labels = torch.full_like(ids, -100)
    for b in range(4):
        idx = torch.randperm(32, generator=g)[:5 - (b % 3)]; labels[b, idx] = ids[b, idx]
    grads = lambda: [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in m.parameters()]
    a = m(ids, labels=labels); a.loss.backward(); ga = grads(); m.zero_grad()
    b = m(ids, labels=labels, max_predictions=6); b.loss.backward(); gb = grads()
    assert b.logits.shape == (4 * 6, 200)
    assert torch.allclose(a.loss, b.loss, atol=1e-6) and all(torch.allclose(x, y, atol=1e-6) for x, y in zip(ga, gb))

def test_static_head_compiles_to_one_graph_without_breaks():
    "Under torch.compile the boolean index breaks the graph and recompiles; the static head captures one graph for every step."
    import torch._dynamo
    from torch._dynamo.utils import counters
    from pd_nb.pretrain import mask_tokens
    def run(k):
        torch._dynamo.reset(); counters.clear()
        m = _tiny_mlm(); f = torch.compile(m, backend='aot_eager')
        g = torch.Generator().manual_seed(0)
        for _ in range(3):
            x, y = mask_tokens(torch.randint(5, 200, (4, 32), generator=g), 4, 200, [0, 1, 2, 3], generator=g, exact=True)
            (f(x, labels=y, max_predictions=k) if k else f(x, labels=y)).loss.backward()
        return counters['stats']['unique_graphs'], sum(counters['graph_break'].values())
    assert run(None) != (1, 0)                       # the boolean index: graph breaks / several graphs
    assert run(int(0.15 * 32) + 1) == (1, 0)


@pytest.mark.parametrize('static', [False, True])
def test_top_layer_at_masked_positions_only_gives_the_plain_loss_and_gradients(static):
    "Labelled calls run the top layer only at the masked positions: loss and every gradient = full encoder + dense head + torch CE."
    set_seed(3)
    m = BertForMaskedLM(BertConfig(n_layers=3, hidden=32, n_heads=2, ffn=64, vocab_size=90, max_positions=32,
                                   dropout=0.0, attn_dropout=0.0)).train()
    ids, am, tt = batch(90, B=3, T=20, seed=4)
    labels = torch.full_like(ids, -100)
    g = torch.Generator().manual_seed(5)
    for b, n in enumerate((4, 2, 1)):                    # unequal counts per row, masked positions only among real tokens
        real = am[b].nonzero()[:, 0]; idx = real[torch.randperm(len(real), generator=g)[:n]]; labels[b, idx] = ids[b, idx]
    out = m(ids, am, tt, labels=labels, max_predictions=5 if static else None)
    out.loss.backward()
    fast = {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}
    assert out.hidden_states.shape == (3, 5 if static else 4, 32)
    m.zero_grad()
    h = m.bert(ids, am, tt).last_hidden_state                                  # every layer at every position
    logits = F.linear(m.mlm.states(h), m.bert.embeddings.word.weight, m.mlm.bias)
    ref = F.cross_entropy(logits.reshape(-1, 90), labels.reshape(-1), ignore_index=-100)
    ref.backward()
    plain = {n: p.grad for n, p in m.named_parameters() if p.grad is not None and not n.startswith('bert.pooler')}
    assert torch.allclose(out.loss, ref, atol=1e-6)
    assert fast.keys() == plain.keys()
    for n in plain: assert torch.allclose(fast[n], plain[n], atol=1e-6), n
