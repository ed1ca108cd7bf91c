"""Per-provider data-transfer (egress) prices, in USD per GB, for the cost optimizer.

Model
-----
Every provider gets three numbers (`EgressPrices`), each the price of one GB *leaving* a
location of that provider:

* ``intra_zone``: to the same region (and zone) of the same provider;
* ``inter_region``: to another region of the same provider;
* ``internet``: out to the public internet, which is also how data reaches any *other*
  provider (we assume no private interconnect between clouds).

Ingress is free on every provider in the table, so a transfer costs what its *source*
charges. The destination never adds anything.

Region granularity
~~~~~~~~~~~~~~~~~~
The optimizer places work per *region*, not per zone, so two placements in the same region
are priced at ``intra_zone``. Moving data between zones of one region is **not** charged in
this model: the optimizer cannot tell which zone the provider will pick inside a region, and
pricing every same-region move as cross-zone would make co-location look no better than
moving to a cheap neighbouring region. This is a known simplification. AWS charges about
$0.01/GB in each direction between availability zones of one region, and GCP charges
$0.01/GiB between zones of one region (see the AWS and GCP entries). Azure does not charge
between zones. A future version could add an ``inter_zone`` field if the optimizer starts
placing per zone.

Which figure is used
~~~~~~~~~~~~~~~~~~~~
Where a provider prices in volume tiers, we use the first *paid* tier (after any free
allowance): the smallest monthly volumes pay this price, and it is the highest per-GB price.
Free allowances (AWS and Azure's first 100 GB/month, DigitalOcean's pooled droplet
allowance) are ignored. The optimizer plans one job at a time and cannot know how much of
the month's allowance is left, so the marginal price is the safe choice. Where prices vary by
region, we use a North American figure (US regions), because that is where most catalog
capacity is, and say so in the comment. GCP publishes prices per GiB. We use those numbers
unchanged as per-GB prices, which overstates them by about 7% (1 GiB = 1.074 GB). That errs
on the conservative side.

Sources
~~~~~~~
Each figure carries a comment naming the official page and the tier used. The figures were
checked on 2026-11-23 against stored copies of those pages, or of third-party summaries
where the official page could not be read. Where a figure could **not** be verified, the
comment says so plainly. Providers change these prices, so re-check them before relying on
them for billing.

Invariant
~~~~~~~~~
For every entry, and for ``DEFAULT_EGRESS``: ``0 <= intra_zone <= inter_region <= internet``.
The optimizer relies on this ordering. It is checked when the module is imported, and a
broken entry raises ``ValueError``. We raise instead of using ``assert`` so the check still
runs under ``python -O``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "DEFAULT_EGRESS",
    "EGRESS",
    "EgressPrices",
    "egress_price_per_gb",
    "prices_for",
]


@dataclass(frozen=True, slots=True)
class EgressPrices:
    """USD per GB leaving a location of this provider."""

    intra_zone: float  # same zone (or same region for providers without zones)
    inter_region: float  # to another region of the same provider
    internet: float  # out to the internet, i.e. to any other provider


EGRESS: dict[str, EgressPrices] = {
    # --- AWS -- https://aws.amazon.com/ec2/pricing/on-demand/ ("Data Transfer" section).
    # The official page renders its rates with JavaScript, so the stored copy shows no numbers.
    # The figures below match several 2026 third-party summaries of that page (e.g.
    # usage.ai "AWS Data Transfer Costs Explained", updated 2026-06-02). Exact page date unknown.
    "aws": EgressPrices(
        # Same AZ over private IPs: $0.00/GB. Cross-AZ in one region is $0.01/GB each way and
        # is NOT modelled (see module docstring).
        intra_zone=0.0,
        # Inter-region "between US regions" (e.g. us-east-1 -> us-west-2): $0.02/GB, charged
        # to the source. us-east-1 <-> us-east-2 is $0.01/GB. Pairs involving South America,
        # the Middle East or Africa cost more (about $0.08-0.15/GB per the same summaries);
        # we ignore them here.
        inter_region=0.02,
        # Data transfer out to internet, us-east-1, "up to 10 TB / month" tier (after the
        # first 100 GB/month free): $0.09/GB. Next 40 TB $0.085, next 100 TB $0.07,
        # > 150 TB $0.05. Some other regions charge more.
        internet=0.09,
    ),
    # --- GCP -- https://cloud.google.com/vpc/network-pricing (VPC "All networking pricing").
    # Stored copy of the page read 2026-09-20 (via the api-evangelist/google-cloud-vpc
    # transcription, which quotes the page verbatim). Prices are per GiB (see docstring).
    "gcp": EgressPrices(
        # "Data transfer to the same Google Cloud zone using internal IP": no charge. Between
        # zones of one region it is $0.01/GiB (verified, same source), which is NOT
        # modelled (see docstring).
        intra_zone=0.0,
        # VM-to-VM inter-region "within North America" (Northern America to Northern
        # America): $0.02/GiB. Between continents (e.g. NA <-> Europe) it is about $0.05/GiB
        # and more to Oceania/Asia (our knowledge, not verified here). We deliberately use
        # the within-continent figure. PARTLY
        # verified: third-party summaries (2026) give $0.01-0.02 for "same continent". The
        # $0.02 figure comes from our knowledge of the official page, and we use the upper
        # end of that range.
        inter_region=0.02,
        # Premium Tier (the default tier) internet data transfer out to North America,
        # "1 GiB to 1,024 GiB" per month tier (first GiB free): $0.12/GiB. Verified (page read
        # 2026-09-20). Standard Tier is cheaper ($0.085), but it is not the default.
        internet=0.12,
    ),
    # --- Azure -- https://azure.microsoft.com/en-us/pricing/details/bandwidth/
    # The official page was not readable in our stored copies. The figures below match
    # third-party summaries of it (c3x.dev "Azure egress bandwidth cost", lucidity.cloud
    # "Azure storage egress cost"; page dates unknown, 2025-2026).
    "azure": EgressPrices(
        # Same region, including across availability zones: no charge.
        intra_zone=0.0,
        # Inter-region data transfer "within North America" (also within Europe): $0.02/GB.
        # Per the same summaries, South America is $0.16 and Asia/MEA $0.08. Inter-continental
        # transfer is about $0.05/GB (our knowledge, not verified here).
        inter_region=0.02,
        # Internet egress, "Microsoft premium global network" routing, Zone 1 (North America,
        # Europe), "next 10 TB / month" tier after the first 100 GB free: $0.087/GB.
        internet=0.087,
    ),
    # --- Lambda Cloud -- https://docs.lambda.ai/public-cloud/billing (site: https://lambda.ai/)
    # The billing page (stored copy, date unknown) lists the only billable resources as
    # On-Demand instances, 1-Click Clusters and filesystems, with no data-transfer item, and
    # says "you are not charged for ingress or egress" on filesystems. Lambda advertises no
    # egress fees. One third-party blog (promptcost.org, 2026) claims $0.09/GB after 1 TB.
    # That claim contradicts the official docs, and we ignore it.
    "lambda": EgressPrices(intra_zone=0.0, inter_region=0.0, internet=0.0),
    # --- Vast.ai -- https://docs.vast.ai/documentation/instances/pricing
    # The page (stored copy, date unknown) says the total cost is GPU compute + storage +
    # *bandwidth*, and that hosts set their own prices. Bandwidth is priced per TB, per
    # host, and differs between offers. There is no single published figure. Every transfer
    # leaves a (usually different) host over the public internet, so same-region,
    # cross-region and internet moves all pay the source host's upload price.
    # REPRESENTATIVE FIGURE, NOT A PUBLISHED PRICE: $0.02/GB (= $20/TB). This is the flat rate
    # an older Vast-era guide quotes (fastai course-v3 docs: "$.02/GB to upload and
    # download"). Many current hosts charge less, some nothing. The real per-offer price is
    # in the offer data and should replace this when the catalog carries it.
    "vast": EgressPrices(intra_zone=0.02, inter_region=0.02, internet=0.02),
    # --- Nebius AI Cloud -- https://nebius.com/prices and https://docs.nebius.com/
    # NOT VERIFIED HERE. The PAYG billing docs (docs.nebius.com/signup-billing/billing-models/
    # payg, stored copy) list the paid services: Compute, Object Storage, Virtual Networks,
    # etc. None of the pricing pages we could read shows a per-GB network egress item. The
    # Compute specific terms (docs.nebius.com/legal/specific-terms/compute) do, however,
    # reserve outgoing traffic as a possibly billable item. Best knowledge: VM egress is not
    # billed today. We use 0 and flag it for re-checking.
    "nebius": EgressPrices(intra_zone=0.0, inter_region=0.0, internet=0.0),
    # --- Hyperbolic -- https://hyperbolic.ai/ (GPU marketplace pricing:
    # https://docs.hyperbolic.xyz/docs/gpu-marketplace-pricing)
    # NOT VERIFIED HERE. The marketplace pricing docs (stored copy, date unknown) give only
    # hourly GPU rates and a platform fee, with no bandwidth or egress charge. Best
    # knowledge: no egress fees. We use 0.
    "hyperbolic": EgressPrices(intra_zone=0.0, inter_region=0.0, internet=0.0),
    # --- Fluidstack -- https://www.fluidstack.io/
    # NOT VERIFIED HERE: no Fluidstack pricing text was found in search. Best knowledge:
    # Fluidstack advertises no ingress or egress fees. We use 0.
    "fluidstack": EgressPrices(intra_zone=0.0, inter_region=0.0, internet=0.0),
    # --- DigitalOcean -- https://docs.digitalocean.com/products/billing/bandwidth/
    # Stored copies of DigitalOcean community answers quoting that page (date unknown, after
    # the 2018 change): droplets include pooled outbound transfer "starting at 1,000 GiB/month
    # for the smallest plan". "Excess data transfer is billed at $0.01/GiB". Inbound is free.
    # Traffic between droplets over the VPC (private interface) does not count.
    # (DigitalOcean's 2018 bandwidth-billing FAQ confirms the cut from $0.02 to $0.01.)
    "do": EgressPrices(
        # Same region over the VPC private network: not counted, free.
        intra_zone=0.0,
        # To another region: goes over the public interface, so it counts against the
        # transfer pool. Overage rate $0.01/GiB (allowance ignored, see docstring).
        inter_region=0.01,
        # Public outbound beyond the pooled allowance: $0.01/GiB.
        internet=0.01,
    ),
    # --- Paperspace (DigitalOcean) --
    # https://docs.paperspace.com/products/paperspace/machines/details/networking/
    # Verified (stored copy, date unknown): "There are no bandwidth charges for either ingress
    # or egress." (An api-evangelist FinOps scaffold claims that egress is pooled with
    # DigitalOcean billing. That file is not an official source, and we ignore it.)
    "paperspace": EgressPrices(intra_zone=0.0, inter_region=0.0, internet=0.0),
    # --- RunPod -- https://docs.runpod.io/pods/pricing
    # Verified (stored copy, date unknown): "All Pods are billed by the second for compute and
    # storage, with no additional fees for data ingress or egress."
    "runpod": EgressPrices(intra_zone=0.0, inter_region=0.0, internet=0.0),
    # --- local -- the user's own machine. No provider bill. Uploading from it is free in this
    # model (the user's ISP is out of scope).
    "local": EgressPrices(intra_zone=0.0, inter_region=0.0, internet=0.0),
}

# Used for a provider that is not in the table. It takes the highest value of each field
# across the table: today that is internet $0.12 (GCP Premium Tier), inter-region $0.02
# (AWS/GCP/Azure/Vast) and intra-zone $0.02 (Vast). Why: an unknown provider may be a
# hyperscaler-like cloud that bills egress. Under-pricing its transfers would make the
# optimizer move data there or out of it too eagerly, while over-pricing only makes a plan
# slightly less adventurous. Taking the field-wise maximum keeps the ordering invariant,
# because each entry satisfies it. Computing it from the table keeps it in step when prices
# change.
DEFAULT_EGRESS: EgressPrices = EgressPrices(
    intra_zone=max(p.intra_zone for p in EGRESS.values()),
    inter_region=max(p.inter_region for p in EGRESS.values()),
    internet=max(p.internet for p in EGRESS.values()),
)


def _check_invariants() -> None:
    """Raise ValueError unless 0 <= intra_zone <= inter_region <= internet everywhere."""
    for name, p in (*EGRESS.items(), ("<default>", DEFAULT_EGRESS)):
        if not (0.0 <= p.intra_zone <= p.inter_region <= p.internet):
            raise ValueError(
                f"egress prices for {name!r} break 0 <= intra_zone <= inter_region <= internet: {p}"
            )


_check_invariants()


def _norm(name: str) -> str:
    return name.strip().lower()


def prices_for(provider: str) -> EgressPrices:
    """The egress prices of `provider`, or `DEFAULT_EGRESS` if it is not in the table.

    The lookup ignores case and surrounding whitespace.
    """
    return EGRESS.get(_norm(provider), DEFAULT_EGRESS)


def egress_price_per_gb(
    src_provider: str,
    src_region: str | None,
    dst_provider: str,
    dst_region: str | None,
) -> float:
    """Price per GB to move data from src to dst.

    Same provider and same region -> intra_zone; same provider, different region ->
    inter_region; different provider -> src's internet price. A region of None means
    unknown: within one provider, treat it as a different region (conservative).
    Providers and regions are compared case-insensitively.
    """
    src = prices_for(src_provider)
    if _norm(src_provider) != _norm(dst_provider):
        return src.internet
    if src_region is not None and dst_region is not None and _norm(src_region) == _norm(dst_region):
        return src.intra_zone
    return src.inter_region
