"""Streaming pre-training data: manifest rows -> augmented 3D crops as torch batches.

Interface (agreed with the train loop; stable)
-----------------------------------------------
``make_loader(output_dir, *, patch_size, batch_size, workers, selection=None,
split="train", val_fraction=0.05, seed=0, augment=True, rank=0, world_size=1,
follow=False) -> torch.utils.data.DataLoader``

Iterating the loader yields one dict per batch, every value a torch tensor:

* ``image``        B x 1 x P x P x P, float32 (z-scored intensities; 0 on padding)
* ``anon_mask``    B x 1 x P x P x P, uint8 0/1 (1 = changed by anonymization)
* ``anatomy_mask`` B x 1 x P x P x P, uint8 0/1 (1 = subject tissue)
* ``valid``        B x 1 x P x P x P, bool (False where the crop is padding)

One pass over the loader is one epoch: every selected image of this split and
rank appears exactly once (one random crop each).  ``split_by_subject(table,
val_fraction, seed)`` returns the (train, val) Arrow tables, never sharing a
subject.  The data is read from ``OUTPUT/arrays`` through the manifest in
``OUTPUT/manifests``; this module never imports Dask.
"""
