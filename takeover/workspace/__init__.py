"""The workspace's on-disk contract: where rounds and models live and how they are numbered
(`layout`), atomic writes (`atomic`), the model registry with its cards and the
`models/current` pointer (`registry`) and the human gate that moves it (`deploy`). No torch,
textual or h5py: every layer reads the workspace through here."""
