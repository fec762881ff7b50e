"""Data sources, seeded splits, transforms and the grain input pipeline.

- `config.default_config()`: the `config.data` subtree.
- `records`: the record model (`RecordSource`, `ArraySource`, `SubsetSource`, `ImageDataset`); imports
  nothing from vitjax. `source_spec.parse_source`: the one parser of `config.data.source` strings.
- `sources.open_source(data_cfg) -> ImageDataset` (hf: / folder: / tfds: / demo:digits), with
  `hf.open_hf_dataset(dataset, data_cfg)` for an in-memory `datasets.Dataset`/`DatasetDict`.
- `splits.write_split(workdir, dataset)`: the audit file of the split used.
- `pipeline.train_iterator(...)`, `pipeline.eval_batches(...)`, `pipeline.DevicePrefetch`, over a task's
  `pipeline.RecordTransforms` (record -> example, and the data knobs the records support).
- `paired`: one crop/flip view applied to an image and its mask or boxes; `multilabel`: label-list
  sources (HF `Sequence(ClassLabel)`, a folder's labels.csv) and multi-hot transforms.
- `device_augment.train_transform(data_cfg, input_size, num_classes)`: crop/flip/mixup in the step.
- `feature_store.filled_arrays(path, layout, fill)`: arrays filled once, in RAM or in files next to
  the decode cache (the feature cache's storage; `vitjax.train.feature_cache` fills them).
"""
