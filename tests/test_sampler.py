import torch

from adplg.training.sampler import EpochSampler


def test_epochs_cover_each_item_once_and_drop_last():
    s = EpochSampler(torch.arange(10, 20), batch_size=3, generator=torch.Generator().manual_seed(0))
    assert s.batches_per_epoch == 3
    epoch = torch.cat([s.next() for _ in range(3)])
    assert len(set(epoch.tolist())) == 9 and set(epoch.tolist()) <= set(range(10, 20))
    second = torch.cat([s.next() for _ in range(3)])
    assert not torch.equal(epoch, second)  # reshuffled


def test_state_round_trip():
    a = EpochSampler(torch.arange(50), batch_size=4, generator=torch.Generator().manual_seed(3))
    for _ in range(7):
        a.next()
    b = EpochSampler(torch.arange(50), batch_size=4, generator=torch.Generator().manual_seed(99))
    b.load_state_dict(a.state_dict())
    for _ in range(30):
        assert torch.equal(a.next(), b.next())
