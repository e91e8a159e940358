"""Input pipeline: sources, class-skewed domains, transforms, batches."""

from jdbw.data.folder import cache_root
from jdbw.data.pipeline import (PAIRINGS, Domain, DomainSpec, check_pairing, domain_dataset,
                                host_batch_size, load_domain, make_batches, paired_dataset)
from jdbw.data.sampling import class_probabilities, parse_class_spec
from jdbw.data.sources import Source, SourceData, load_source, parse_source
from jdbw.errors import ConfigError
