"""The shipped catalog: built from the real data, every provider, quirks handled."""

import math

import numpy as np
import pytest

from conftest import SHARED_DATA
from skyhop.catalog.accelerators import AcceleratorNames
from skyhop.catalog.egress import EGRESS, egress_price_per_gb
from skyhop.errors import UnknownAcceleratorError

PROVIDERS = {"aws", "gcp", "azure", "lambda", "vast", "nebius", "hyperbolic", "fluidstack",
             "do", "paperspace", "runpod"}


def _offers(catalog, instance_type):
    rows = np.nonzero(catalog.instance_type == catalog.instance_types.index(instance_type))[0]
    return [catalog.offer(int(r)) for r in rows]


def test_every_provider_in_the_data_is_shipped(catalog):
    assert set(catalog.providers) == PROVIDERS
    counts = np.bincount(catalog.provider, minlength=len(catalog.providers))
    assert (counts > 0).all()


def test_gcp_gpu_vm_is_host_plus_accelerator(catalog):
    # shared/data/README.md s.1.3: us-central1-a a2-highgpu-1g host $0.73948 (spot 0.36975)
    # + A100 row $2.93391 (spot 1.4341).
    mask = ((catalog.instance_type == catalog.instance_types.index("a2-highgpu-1g"))
            & (catalog.zone == catalog.zones.index("us-central1-a")))
    (row,) = np.nonzero(mask)[0]
    offer = catalog.offer(int(row))
    assert offer.accelerators == {"A100": 1.0}
    assert offer.price == pytest.approx(0.73948 + 2.93391)
    assert offer.spot_price == pytest.approx(0.36975 + 1.4341)
    assert offer.vcpus == 12


def test_gcp_gpu_hosts_are_not_sold_without_their_gpus(catalog):
    rows = np.nonzero(catalog.instance_type == catalog.instance_types.index("a2-highgpu-1g"))[0]
    assert (catalog.accelerator[rows] >= 0).all()


def test_gcp_n1_hosts_respect_the_attach_limits(catalog):
    v100 = catalog.accelerators.index("V100")
    gcp = catalog.providers.index("gcp")
    rows = (catalog.provider == gcp) & (catalog.accelerator == v100) & (
        catalog.accelerator_count == 1)
    assert rows.any()
    assert catalog.vcpus[rows].max() <= 12 and catalog.memory_gib[rows].max() <= 78


def test_vast_zero_spot_price_means_no_spot(catalog):
    vast = catalog.provider == catalog.providers.index("vast")
    assert np.isnan(catalog.spot_price[vast]).all()


def test_aws_keeps_az_ids_and_p3_from_the_older_snapshot(catalog):
    p3 = [o for o in _offers(catalog, "p3.2xlarge") if o.region == "us-east-1"]
    assert p3 and all(o.zone.startswith("use1-") for o in p3)  # AZ IDs, not names
    assert {o.price for o in p3} == {3.06} and p3[0].accelerators == {"V100": 1.0}


def test_azure_unquoted_generation_rows_are_all_read(catalog):
    azure = int((catalog.provider == catalog.providers.index("azure")).sum())
    assert azure == 56671  # every data row of v8/azure/vms.csv (README s.1.3)


def test_accelerator_names_are_canonical(catalog):
    assert "A100-80GB-SXM4" not in catalog.accelerators  # RunPod's spelling folded
    runpod = catalog.providers.index("runpod")
    names = {catalog.accelerators[a] for a in catalog.accelerator[catalog.provider == runpod]}
    assert {"A100-80GB", "H100", "A6000"} <= names


@pytest.mark.parametrize(("typed", "canonical"), [
    ("a100", "A100"), ("A100-80gb", "A100-80GB"), ("nvidia-h100", "H100"), ("h100_80gb", "H100"),
    ("Tesla V100", "V100"), ("rtxa6000", "A6000"), ("TPU-V5P-8", "tpu-v5p-8")])
def test_aliases_resolve_case_insensitively(catalog, typed, canonical):
    assert catalog.accelerator_names.resolve(typed) == canonical


def test_unknown_accelerator_suggests(catalog):
    with pytest.raises(UnknownAcceleratorError) as info:
        catalog.accelerator_names.resolve("A1000")
    assert "did you mean" in str(info.value) and "'A100'" in str(info.value)
    with pytest.raises(UnknownAcceleratorError, match="skyhop catalog gpus"):
        AcceleratorNames(["A100"]).resolve("zzzzzz")


def test_egress_table_is_ordered_and_priced():
    for name, p in EGRESS.items():
        assert 0 <= p.intra_zone <= p.inter_region <= p.internet, name
    assert egress_price_per_gb("aws", "us-east-1", "aws", "us-east-1") == 0
    assert egress_price_per_gb("aws", "us-east-1", "aws", "us-west-2") == EGRESS[
        "aws"].inter_region
    assert egress_price_per_gb("gcp", "us-central1", "aws", "us-east-1") == EGRESS[
        "gcp"].internet


@pytest.mark.skipif(not (SHARED_DATA / "catalog").is_dir(), reason="shared/data not present")
def test_shipped_catalog_is_what_the_script_builds(tmp_path, catalog):
    from skyhop.catalog.build import build
    from skyhop.catalog.catalog import read_catalog

    build(SHARED_DATA, tmp_path)
    rebuilt = read_catalog(tmp_path)
    assert rebuilt.offers.tobytes() == catalog.offers.tobytes() or all(
        np.array_equal(rebuilt.offers[c], catalog.offers[c], equal_nan=True)
        for c in catalog.offers.dtype.names)
    assert rebuilt.instance_types == catalog.instance_types


def test_offer_prices_are_positive_where_present(catalog):
    for column in (catalog.price, catalog.spot_price):
        present = column[~np.isnan(column)]
        assert (present >= 0).all()
    assert not math.isnan(float(np.nanmin(catalog.price)))
