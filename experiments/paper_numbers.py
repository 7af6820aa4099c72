"""The paper's numbers (Ahmed & Courville, AAAI 2020), transcribed exactly, for --compare=paper.

Every value is (mean, std) in percent over 3 trials. Rows are in the paper's order, which is the
class order of the TFDS datasets, so a row's position is its hold-out class index.
"""

# Each row: classification-only (MSP, ODIN, accuracy), then rotation-augmented (the same three).
TABLE3_CIFAR10 = (
    ('airplane', (43.30, 1.13), (48.23, 1.90), (96.00, 0.16),
     (46.87, 2.10), (49.75, 2.30), (96.91, 0.02)),
    ('automobile', (14.13, 1.33), (13.47, 1.50), (95.78, 0.12),
     (17.39, 1.26), (17.35, 1.12), (96.66, 0.03)),
    ('bird', (46.55, 1.27), (50.59, 0.95), (95.90, 0.17),
     (51.49, 1.07), (54.62, 1.10), (96.79, 0.06)),
    ('cat', (38.06, 1.31), (38.97, 1.43), (97.05, 0.12),
     (53.12, 0.92), (55.80, 0.76), (97.46, 0.07)),
    ('deer', (49.11, 0.53), (53.03, 0.50), (95.87, 0.12),
     (50.35, 2.57), (52.82, 2.96), (96.76, 0.09)),
    ('dog', (25.39, 1.17), (24.41, 1.05), (96.64, 0.13),
     (32.11, 0.82), (32.46, 1.39), (97.36, 0.06)),
    ('frog', (40.91, 0.81), (42.21, 0.48), (95.65, 0.09),
     (52.39, 4.58), (54.44, 5.80), (96.51, 0.12)),
    ('horse', (36.18, 0.77), (36.78, 0.82), (95.64, 0.08),
     (39.93, 2.30), (39.65, 4.31), (96.27, 0.07)),
    ('ship', (28.35, 0.81), (30.61, 1.46), (95.70, 0.15),
     (29.36, 3.16), (28.82, 4.63), (96.66, 0.17)),
    ('truck', (27.17, 0.73), (28.01, 1.06), (96.04, 0.24),
     (29.22, 2.87), (29.93, 3.86), (96.91, 0.12)),
    ('Average', (34.92, 0.41), (36.63, 0.61), (96.03, 0.00),
     (40.22, 0.16), (41.56, 0.15), (96.83, 0.02)),
)

TABLE4_STL10 = (
    ('airplane', (19.21, 1.05), (23.46, 1.65), (85.18, 0.20),
     (22.21, 0.76), (23.37, 1.71), (89.24, 0.12)),
    ('bird', (29.05, 0.69), (33.51, 0.36), (85.91, 0.36),
     (36.12, 2.08), (40.08, 3.30), (89.91, 0.29)),
    ('car', (14.52, 0.37), (16.14, 0.83), (84.32, 0.55),
     (15.95, 2.20), (16.87, 2.94), (89.52, 0.44)),
    ('cat', (25.21, 0.93), (27.92, 0.84), (86.95, 0.36),
     (29.34, 1.30), (31.35, 1.88), (90.89, 0.26)),
    ('deer', (24.29, 0.53), (25.94, 0.49), (85.34, 0.35),
     (27.60, 2.22), (29.71, 2.55), (89.20, 0.17)),
    ('dog', (23.42, 0.60), (23.44, 1.18), (87.78, 0.45),
     (26.78, 0.71), (26.14, 0.62), (91.37, 0.33)),
    ('horse', (21.31, 1.01), (22.19, 0.75), (85.52, 0.21),
     (23.79, 1.46), (23.59, 1.63), (89.60, 0.11)),
    ('monkey', (23.67, 0.83), (21.98, 0.91), (86.66, 0.31),
     (28.43, 1.67), (28.32, 1.20), (90.07, 0.23)),
    ('ship', (14.61, 0.12), (13.78, 0.63), (84.65, 0.21),
     (16.79, 1.20), (15.37, 1.22), (89.33, 0.15)),
    ('truck', (15.43, 0.17), (14.35, 0.12), (85.34, 0.17),
     (17.05, 0.50), (16.59, 0.60), (90.08, 0.38)),
    ('Average', (21.07, 0.25), (22.27, 0.29), (85.77, 0.13),
     (24.41, 0.23), (25.14, 0.45), (89.92, 0.08)),
)

# Each row: subset, skew, then the same six columns, averaged over the subset's members.
TABLE5_IMAGENET = (
    ('dog', 8.33, (23.92, 0.49), (25.85, 0.09), (85.09, 0.14),
     (24.66, 0.58), (25.73, 0.87), (85.25, 0.17)),
    ('car', 10.00, (21.54, 0.62), (22.49, 0.54), (77.17, 0.10),
     (21.66, 0.19), (22.38, 0.46), (76.72, 0.19)),
    ('snake', 11.11, (18.62, 0.93), (19.18, 0.79), (69.74, 1.63),
     (20.23, 0.18), (21.17, 0.12), (70.51, 0.48)),
    ('spider', 16.67, (21.20, 0.56), (24.15, 0.72), (68.40, 0.21),
     (22.90, 1.29), (25.10, 1.78), (68.68, 0.77)),
    ('fungus', 16.67, (42.56, 0.49), (44.59, 1.46), (88.23, 0.45),
     (44.19, 1.86), (46.86, 1.13), (88.47, 0.43)),
)

# Table 6, as Table 5 with CPC as the auxiliary task (Appendix B: the ImageNet network with a
# stride-2 first convolution, reflection padding, conditional normalisation, lambda = 10).
TABLE6_IMAGENET_CPC = (
    ('dog', 8.33, (20.84, 0.50), (22.77, 0.74), (83.12, 0.26),
     (21.43, 0.63), (24.08, 0.63), (84.16, 0.07)),
    ('car', 10.00, (19.86, 0.21), (21.42, 0.48), (75.42, 0.11),
     (22.21, 0.44), (23.61, 0.57), (78.88, 0.15)),
    ('snake', 11.11, (18.20, 0.76), (18.67, 1.07), (66.15, 1.89),
     (18.78, 0.40), (20.39, 0.60), (68.02, 0.85)),
    ('spider', 16.67, (22.03, 0.68), (24.08, 0.70), (66.65, 0.42),
     (22.28, 0.60), (23.37, 0.68), (68.67, 0.36)),
    ('fungus', 16.67, (39.19, 1.26), (41.71, 1.94), (87.05, 0.06),
     (42.08, 0.57), (45.05, 1.11), (88.91, 0.46)),
)

# Each row: method, accuracy, average precision with MSP; averages over CIFAR-10's hold-out classes.
TABLE7_CIFAR10 = (
    ('Base model', (96.03, 0.00), (34.92, 0.41)),
    ('Random-center-masked', (96.27, 0.05), (34.41, 0.74)),
    ('Rotation-augmented', (96.83, 0.02), (40.22, 0.16)),
)

METRICS = ('msp', 'odin', 'accuracy')
AUX_COLUMNS = ('none', 'rotation')  # the left and right halves of Tables 3-5
TABLES = {'table3': 'Table 3', 'table4': 'Table 4', 'table5': 'Table 5', 'table6': 'Table 6',
          'table7': 'Table 7'}
# The ImageNet-subset tables: rows, and the auxiliary task of their right half.
SUBSET_TABLES = {'table5': (TABLE5_IMAGENET, 'rotation'), 'table6': (TABLE6_IMAGENET_CPC, 'cpc')}


def _six_columns(row, aux_columns=AUX_COLUMNS) -> dict:
  return {aux: dict(zip(METRICS, row[3 * i:3 * i + 3])) for i, aux in enumerate(aux_columns)}


def paper_value(sweep: str, row, aux: str, metric: str):
  """The paper's (mean, std) for a cell of our report, or None where the paper has no such cell.

  `row` is a hold-out class index, 'Average', or (for Tables 5 and 6) a dataset name
  `imagenet_<subset>`.
  """
  if sweep in ('table3', 'table4'):
    rows = TABLE3_CIFAR10 if sweep == 'table3' else TABLE4_STL10
    position = len(rows) - 1 if row == 'Average' else row
    if not isinstance(position, int) or not 0 <= position < len(rows):
      return None
    return _six_columns(rows[position][1:]).get(aux, {}).get(metric)
  if sweep in SUBSET_TABLES:
    rows, right = SUBSET_TABLES[sweep]
    subsets = {f'imagenet_{name}': values for name, _, *values in rows}
    return (_six_columns(subsets[row], ('none', right)).get(aux, {}).get(metric)
            if row in subsets else None)
  if sweep == 'table7' and row == 'Average' and aux == 'none':
    _, accuracy, msp = TABLE7_CIFAR10[1]  # our table7 sweep is the random-center-masked row
    return dict(accuracy=accuracy, msp=msp).get(metric)
  return None


def paper_skew(sweep: str, dataset: str):
  """Table 5's or 6's skew of a subset (percent of anomalies among test examples), or None."""
  if sweep not in SUBSET_TABLES:
    return None
  return {f'imagenet_{name}': skew for name, skew, *_ in SUBSET_TABLES[sweep][0]}.get(dataset)
