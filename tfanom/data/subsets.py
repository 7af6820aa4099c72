"""The paper's ILSVRC2012 subsets (Table 8) and any subset a user chooses by WordNet id.

No TensorFlow here: the training config reads the subset table to name the ImageNet datasets.
"""

from tfanom.errors import UsageError

# Table 8, in its order: (WordNet id, name). Every id is an ILSVRC2012 class (tests check them
# against the list that tensorflow-datasets ships).
SUBSETS = {
    'dog': (  # hounds
        ('n02091244', 'Ibizan hound'), ('n02088632', 'bluetick'), ('n02088364', 'beagle'),
        ('n02088094', 'Afghan hound'), ('n02092339', 'Weimaraner'), ('n02091831', 'Saluki'),
        ('n02090379', 'redbone'), ('n02091635', 'otterhound'),
        ('n02091467', 'Norwegian elkhound'), ('n02088238', 'basset hound'),
        ('n02092002', 'Scottish deerhound'), ('n02088466', 'bloodhound')),
    'car': (
        ('n03777568', 'Model T'), ('n04037443', 'race car'), ('n04285008', 'sports car'),
        ('n03770679', 'minivan'), ('n02701002', 'ambulance'), ('n02930766', 'cab'),
        ('n02814533', 'beach wagon'), ('n03594945', 'jeep'), ('n03100240', 'convertible'),
        ('n03670208', 'limo')),
    'snake': (  # colubrids
        ('n01728920', 'ringneck snake'), ('n01739381', 'vine snake'),
        ('n01729322', 'hognose snake'), ('n01728572', 'thunder snake'),
        ('n01735189', 'garter snake'), ('n01734418', 'king snake'), ('n01740131', 'night snake'),
        ('n01729977', 'green snake'), ('n01737021', 'water snake')),
    'spider': (
        ('n01774750', 'tarantula'), ('n01773157', 'Argiope aurantia'),
        ('n01773549', 'barn spider'), ('n01774384', 'black widow'),
        ('n01773797', 'garden spider'), ('n01775062', 'wolf spider')),
    'fungus': (
        ('n13040303', 'stinkhorn'), ('n13054560', 'bolete'), ('n13052670', 'hen-of-the-woods'),
        ('n13044778', 'earthstar'), ('n13037406', 'gyromitra'), ('n12985857', 'coral fungus')),
}

def ilsvrc2012_wnids() -> tuple[str, ...]:
  """The 1000 ILSVRC2012 classes in TFDS's label order (the list tensorflow-datasets ships)."""
  from tensorflow_datasets.datasets.imagenet2012 import imagenet_common  # pylint: disable=g-import-not-at-top
  with open(imagenet_common.label_names_file()) as handle:
    return tuple(line.strip() for line in handle if line.strip())


def subset_members(dataset: str, members=()) -> tuple[tuple[str, str], ...]:
  """(WordNet id, name) of each member of `dataset` (`imagenet_<subset>` or `imagenet_subset`)."""
  subset = dataset.removeprefix('imagenet_')
  if subset != 'subset':
    if subset not in SUBSETS:
      raise UsageError(f'--dataset={dataset} is unknown: the ImageNet subsets are '
                       f'{", ".join("imagenet_" + s for s in SUBSETS)} and imagenet_subset')
    return SUBSETS[subset]
  members = tuple(members)
  valid = set(ilsvrc2012_wnids())
  unknown = [wnid for wnid in members if wnid not in valid]
  if unknown:
    what = ('is not an ILSVRC2012 WordNet id' if len(unknown) == 1
            else 'are not ILSVRC2012 WordNet ids')
    raise UsageError(f'--members: {", ".join(unknown)} {what}: give ids such as n02091244 (see '
                     'docs/protocol.md, "The ImageNet subsets")')
  if len(set(members)) != len(members) or len(members) < 2:
    raise UsageError(f'--members={",".join(members)} must name at least two different classes')
  names = {wnid: name for table in SUBSETS.values() for wnid, name in table}
  return tuple((wnid, names.get(wnid, wnid)) for wnid in members)
