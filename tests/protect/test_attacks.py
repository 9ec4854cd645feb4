"""A malicious coordinator: each attack is detected by the parties or yields only the sum.

The coordinator here is a SecAggServer that records every message it relays (its whole
view) and whose broadcasts the tests alter before handing them to the parties.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from accord.errors import (
    EnvelopeError,
    SecAggAbortedError,
    SecAggTamperError,
    SecAggTooFewError,
)
from accord.protect import (
    AdvertisementSet,
    ConfirmationSet,
    KeyShares,
    MaskAttestation,
    MaskedInput,
    SecAggServer,
    ShareDelivery,
    SurvivorList,
    UnmaskRequest,
    UnmaskResponse,
    shamir,
)
from accord.protect.envelope import open_envelope, raw_public
from accord.protect.masks import add_masks, pairwise_seed, pairwise_sign, self_mask_seed
from tests.protect.harness import (
    MODEL_HASH,
    Federation,
    LyingServer,
    RecordingServer,
    RoundDriver,
    chi_square_top_bits,
)

CHI2_LIMIT = 60.0  # 15 degrees of freedom: P[chi2 > 60] is about 1e-7 for uniform words


def complete(n: int, **kw: object) -> Federation:
    return Federation(n, allow_sparse=False, **kw)  # type: ignore[arg-type]


def masked_up_to_signing(fed: Federation, **driver_kw: object) -> tuple[RoundDriver, SurvivorList]:
    driver = RoundDriver(fed, **driver_kw)  # type: ignore[arg-type]
    deliveries = driver.share(driver.confirm(driver.advertise()))
    return driver, driver.mask(deliveries)


def attestations(driver: RoundDriver) -> tuple[MaskAttestation, ...]:
    """Every mask attestation the coordinator received (with the masked inputs)."""
    assert isinstance(driver.server, RecordingServer)
    return tuple(m.attestation for m in driver.server.view if isinstance(m, MaskedInput))


def _view_bytes(view: list[object]) -> list[bytes]:
    """Every bytes field (and vector) of every message in the coordinator's view."""
    out: list[bytes] = []

    def walk(value: object) -> None:
        if isinstance(value, bytes):
            out.append(value)
        elif isinstance(value, np.ndarray):
            out.append(value.tobytes())
        elif dataclasses.is_dataclass(value):
            for field in dataclasses.fields(value):
                walk(getattr(value, field.name))
        elif isinstance(value, tuple):
            for item in value:
                walk(item)

    for message in view:
        walk(message)
    return out


# --- what the coordinator sees ------------------------------------------------------------


def test_the_coordinator_cannot_read_any_share_or_secret_before_unmasking() -> None:
    fed = complete(5, delta=0.2)
    driver, _ = masked_up_to_signing(fed)
    server = driver.server
    assert isinstance(server, RecordingServer)
    seen = b"".join(_view_bytes(server.view))
    for node in driver.nodes.values():
        secrets = [
            node._self_mask,
            node._s_key.private_bytes_raw(),
            node._c_key.private_bytes_raw(),
        ]
        secrets += [share for pair in node._held.values() for share in pair]
        assert all(secret not in seen for secret in secrets)
    # Its own keys open no envelope.
    intruder = X25519PrivateKey.generate()
    envelopes = [e for m in server.view if isinstance(m, KeyShares) for e in m.envelopes]
    assert len(envelopes) == 5 * 4
    for envelope in envelopes:
        with pytest.raises(EnvelopeError):
            open_envelope(
                envelope,
                job_id=fed.job_id,
                round_=fed.round,
                sender=envelope.sender,
                recipient=envelope.recipient,
                recipient_key=intruder,
                sender_public=intruder.public_key(),
            )


def test_a_masked_input_is_uniform_whatever_the_input() -> None:
    fed = complete(3, ring_bits=24, length=100_000)
    for value in (0, 2**23 - 1):
        driver = RoundDriver(fed)
        driver.inputs["p000"] = np.full(fed.length, value, dtype=np.uint32)
        driver.mask(driver.share(driver.confirm(driver.advertise())))
        assert isinstance(driver.server, RecordingServer)
        (y,) = [
            m.values
            for m in driver.server.view
            if isinstance(m, MaskedInput) and m.sender == "p000"
        ]
        assert chi_square_top_bits(y, fed.ring_bits) < CHI2_LIMIT
        assert abs(float(y.mean()) / 2**24 - 0.5) < 0.005


# --- lying about who dropped out -----------------------------------------------------------


def test_claiming_a_survivor_dropped_yields_only_the_sum_of_the_others() -> None:
    fed = complete(6)  # t = 4 of 6 holders, m = 4 signatures
    server = LyingServer(fed.params, fed.roster_keys, MODEL_HASH, claim_dropped={"p005"})
    driver, lie = masked_up_to_signing(fed, server=server)
    assert lie.survivors == fed.names[:5]
    with pytest.raises(SecAggAbortedError, match="leaves this party out"):
        driver.nodes["p005"].sign_survivors(lie)
    total = driver.unmask(driver.sign(lie))
    # The coordinator gets the sum of the five it listed, exactly: nothing about p005 in it.
    assert np.array_equal(total.astype(np.uint64), fed.expected_sum(driver.inputs, fed.names[:5]))
    # It now holds y_005 and p005's reconstructed mask key, but no share of b_005.
    responses = [m for m in server.view if isinstance(m, UnmaskResponse)]
    assert not any(owner == "p005" for r in responses for owner, _ in r.self_mask_shares)
    key_shares = [
        shamir.Share.from_bytes(fed.params.share_x(r.sender), share)
        for r in responses
        for owner, share in r.key_shares
        if owner == "p005"
    ]
    s_005 = X25519PrivateKey.from_private_bytes(shamir.reconstruct(key_shares, 4))
    ads = {m.party: m for m in server.view if hasattr(m, "s_public") and hasattr(m, "party")}
    strip = []
    for peer in fed.names[:5]:
        seed = pairwise_seed(
            s_005,
            X25519PublicKey.from_public_bytes(ads[peer].s_public),
            fed.job_id,
            fed.round,
            peer,
            "p005",
        )
        strip.append((seed, -pairwise_sign(fed.params.index("p005"), fed.params.index(peer))))
    (y_005,) = [m.values for m in server.view if isinstance(m, MaskedInput) and m.sender == "p005"]
    residual = add_masks(y_005, strip, fed.ring_bits)
    # Left with x_005 + PRG(b_005): the self mask still hides the input.
    x_005 = driver.inputs["p005"]
    assert np.mean(residual == x_005) < 0.01
    assert abs(float(residual.mean()) / 2**fed.ring_bits - 0.5) < 0.05


def test_split_survivor_lists_never_gather_enough_signatures() -> None:
    fed = complete(6)  # m = 4
    driver, honest = masked_up_to_signing(fed)
    nodes, victim = driver.nodes, "p000"
    group_a, group_b = ("p000", "p001", "p002"), ("p003", "p004", "p005")
    lie = SurvivorList(fed.job_id, fed.round, tuple(p for p in honest.survivors if p != victim))
    sigs_a = tuple(nodes[p].sign_survivors(honest) for p in group_a)
    sigs_b = tuple(nodes[p].sign_survivors(lie) for p in group_b)
    atts = attestations(driver)
    request_a = UnmaskRequest(fed.job_id, fed.round, honest.survivors, sigs_a, atts)
    request_b = UnmaskRequest(fed.job_id, fed.round, lie.survivors, sigs_b, atts)
    with pytest.raises(SecAggTooFewError, match="3 valid signatures"):
        nodes["p001"].unmask(request_a)
    with pytest.raises(SecAggTooFewError, match="3 valid signatures"):
        nodes["p003"].unmask(request_b)
    # Mixing in the other group's signatures does not help: they are over another list.
    mixed = UnmaskRequest(fed.job_id, fed.round, honest.survivors, sigs_a + sigs_b[:1], atts)
    with pytest.raises(SecAggTamperError, match="signature"):
        nodes["p002"].unmask(mixed)
    # A party shown the other list refuses: it is not the one it signed.
    with pytest.raises(SecAggTamperError, match="different survivor list"):
        nodes["p004"].unmask(request_a)


def test_a_party_signs_one_list_and_never_reveals_the_other_share() -> None:
    fed = complete(6)
    driver, honest = masked_up_to_signing(fed)
    node = driver.nodes["p001"]
    request = driver.sign(honest)
    first = node.unmask(request)
    assert node.unmask(request) == first  # a retry gets the same shares, nothing new
    assert {owner for owner, _ in first.self_mask_shares} == set(fed.names)
    assert first.key_shares == ()
    lie = SurvivorList(fed.job_id, fed.round, fed.names[:5])
    with pytest.raises(SecAggAbortedError):
        node.sign_survivors(lie)  # it already signed another list this round
    other = dataclasses.replace(request, survivors=lie.survivors)
    with pytest.raises(SecAggAbortedError):
        node.unmask(other)


def test_forged_survivor_signatures_are_refused() -> None:
    fed = complete(6)
    driver, honest = masked_up_to_signing(fed)
    real = [driver.nodes[p].sign_survivors(honest) for p in fed.names[:3]]
    forged = dataclasses.replace(real[0], party="p005", signature=os.urandom(64))
    request = UnmaskRequest(
        fed.job_id, fed.round, honest.survivors, (*real, forged), attestations(driver)
    )
    with pytest.raises(SecAggTamperError, match="signature of 'p005'"):
        driver.nodes["p001"].unmask(request)


# --- different models, substituted keys, other sets ---------------------------------------


def test_a_party_sent_a_different_model_is_detected_by_everyone() -> None:
    fed = complete(5)
    other_model = bytes(32)
    nodes = fed.nodes({"p002": other_model})
    # A coordinator that skips its own check and relays everything.
    ads = tuple(nodes[p].advertise() for p in fed.names)
    ad_set = AdvertisementSet(fed.job_id, fed.round, ads)
    for p in fed.names:
        with pytest.raises(SecAggTamperError, match="different global model"):
            nodes[p].confirm(ad_set)
    # An honest coordinator that knows the model it sent refuses the advertisement outright.
    honest = fed.server()
    with pytest.raises(SecAggTamperError, match="another global model"):
        honest.receive_advertisement(fed.node("p002", other_model).advertise())


def test_substituted_encryption_and_signing_keys_are_detected() -> None:
    fed = complete(5)
    driver = RoundDriver(fed)
    ad_set = driver.advertise()
    real = {a.party: a for a in ad_set.advertisements}
    # The coordinator makes its own keys for p001 and signs with its own identity key.
    impostor = Ed25519PrivateKey.generate()
    unsigned = dataclasses.replace(
        real["p001"],
        c_public=raw_public(X25519PrivateKey.generate().public_key()),
        s_public=raw_public(X25519PrivateKey.generate().public_key()),
    )
    forged = dataclasses.replace(unsigned, signature=impostor.sign(unsigned.payload()))
    swapped_only = dataclasses.replace(unsigned, signature=real["p001"].signature)
    for fake, victim in ((forged, "p003"), (swapped_only, "p004")):
        ads = tuple(fake if a.party == "p001" else a for a in ad_set.advertisements)
        tampered = AdvertisementSet(fed.job_id, fed.round, ads)
        with pytest.raises(SecAggTamperError, match=r"advertisement of 'p001'.*valid signature"):
            driver.nodes[victim].confirm(tampered)


def test_advertisements_of_strangers_or_of_another_job_are_refused() -> None:
    fed = complete(5)
    driver = RoundDriver(fed)
    ad_set = driver.advertise()
    stranger = Ed25519PrivateKey.generate()
    unsigned = dataclasses.replace(ad_set.advertisements[0], party="mallory")
    mallory = dataclasses.replace(unsigned, signature=stranger.sign(unsigned.payload()))
    with_stranger = dataclasses.replace(ad_set, advertisements=(*ad_set.advertisements, mallory))
    with pytest.raises(SecAggTamperError, match="'mallory', who is not on the roster"):
        driver.nodes["p000"].confirm(with_stranger)
    other_job = dataclasses.replace(ad_set, job_id="another-job")
    with pytest.raises(SecAggTamperError, match="another-job"):
        driver.nodes["p001"].confirm(other_job)
    doubled = dataclasses.replace(
        ad_set, advertisements=(*ad_set.advertisements, ad_set.advertisements[2])
    )
    with pytest.raises(SecAggTamperError, match="twice"):
        driver.nodes["p002"].confirm(doubled)
    without_me = dataclasses.replace(ad_set, advertisements=ad_set.advertisements[:3])
    with pytest.raises(SecAggTamperError, match="this party's own"):
        driver.nodes["p004"].confirm(without_me)


def test_parties_shown_different_advertisement_sets_are_detected() -> None:
    fed = complete(6)
    driver = RoundDriver(fed)
    full = driver.advertise()
    smaller = AdvertisementSet(
        fed.job_id, fed.round, tuple(a for a in full.advertisements if a.party != "p005")
    )
    confirmations = [driver.nodes[p].confirm(full) for p in fed.names if p != "p003"]
    odd_one = driver.nodes["p003"].confirm(smaller)
    conf_set = ConfirmationSet(fed.job_id, fed.round, (*confirmations, odd_one))
    with pytest.raises(SecAggTamperError, match="another advertisement set"):
        driver.nodes["p000"].share_keys(conf_set)


def test_messages_of_another_round_are_refused() -> None:
    fed = complete(5)
    old_ad = fed.node("p001").advertise()
    next_round = dataclasses.replace(fed.params, round=1)
    server = SecAggServer(next_round, fed.roster_keys)
    with pytest.raises(SecAggTamperError, match="round 0"):
        server.receive_advertisement(old_ad)


# --- withholding or redirecting envelopes -------------------------------------------------


def test_a_party_refuses_to_mask_when_too_few_holders_shared_with_it() -> None:
    fed = complete(6)  # t = 4: own share + at least 3 others
    driver = RoundDriver(fed)
    deliveries = driver.share(driver.confirm(driver.advertise()))
    starved = deliveries["p000"]
    starved = dataclasses.replace(starved, envelopes=starved.envelopes[:2])
    with pytest.raises(SecAggTooFewError, match="only 3 of this party's share holders"):
        driver.nodes["p000"].masked_input(starved, driver.inputs["p000"])


def test_one_way_delivery_cannot_be_used_to_unmask_a_party() -> None:
    """The coordinator withholds p004's envelope from p000 (so p000 does not mask with
    p004) but gives p000's envelope to p004, keeps p004 on the list and asks p004 for its
    share of b_000: p000 refuses to sign, and p004 refuses to reveal, because p000's signed
    attestation does not name it."""
    fed = complete(6)
    driver = RoundDriver(fed)
    deliveries = dict(driver.share(driver.confirm(driver.advertise())))
    withheld = deliveries["p000"]
    deliveries["p000"] = dataclasses.replace(
        withheld, envelopes=tuple(e for e in withheld.envelopes if e.sender != "p004")
    )
    # The coordinator's own books agree with what it did.
    driver.server._delivered["p000"] -= {"p004"}
    survivors = driver.mask(deliveries)
    assert "p004" in survivors.survivors
    with pytest.raises(SecAggTamperError, match=r"neighbours \['p004'\]"):
        driver.nodes["p000"].sign_survivors(survivors)
    request = driver.sign(survivors, parties=fed.names[1:])
    with pytest.raises(SecAggTamperError, match="'p000' did not mask with this party"):
        driver.nodes["p004"].unmask(request)
    # The others (p000 named them all) reveal as usual.
    assert {o for o, _ in driver.nodes["p001"].unmask(request).self_mask_shares} >= {"p000"}


def test_a_missing_or_forged_attestation_stops_unmasking() -> None:
    fed = complete(5)
    driver, survivors = masked_up_to_signing(fed)
    request = driver.sign(survivors)
    without = dataclasses.replace(request, attestations=request.attestations[1:])
    with pytest.raises(SecAggTamperError, match="attestation of 'p000' is missing"):
        driver.nodes["p001"].unmask(without)
    first = request.attestations[0]
    narrowed = dataclasses.replace(first, masked_with=fed.names[1:3])  # signature now invalid
    forged = dataclasses.replace(request, attestations=(narrowed, *request.attestations[1:]))
    with pytest.raises(SecAggTamperError, match="attestation of 'p000'"):
        driver.nodes["p002"].unmask(forged)


def test_a_redirected_envelope_fails_authentication() -> None:
    fed = complete(5)
    driver = RoundDriver(fed)
    driver.share(driver.confirm(driver.advertise()))
    assert isinstance(driver.server, RecordingServer)
    envelopes = [e for m in driver.server.view if isinstance(m, KeyShares) for e in m.envelopes]
    to_p002 = next(e for e in envelopes if (e.sender, e.recipient) == ("p001", "p002"))
    redirected = dataclasses.replace(to_p002, recipient="p003")
    inbox = [e for e in envelopes if e.recipient == "p003" and e.sender != "p001"]
    delivery = ShareDelivery(fed.job_id, fed.round, "p003", (*inbox, redirected))
    with pytest.raises(EnvelopeError, match="failed authentication"):
        driver.nodes["p003"].masked_input(delivery, driver.inputs["p003"])


# --- the sparse graph's nonces -------------------------------------------------------------


def test_the_coordinator_cannot_leave_out_or_alter_a_nonce_in_a_sparse_round() -> None:
    fed = Federation(20, gamma=0.1, delta=0.1, length=50)
    driver = RoundDriver(fed)
    ad_set = driver.advertise()
    confirmations = [driver.nodes[p].confirm(ad_set) for p in fed.names]
    without = ConfirmationSet(fed.job_id, fed.round, tuple(confirmations[:7] + confirmations[8:]))
    with pytest.raises(SecAggTooFewError, match=r"\['p007'\] advertised but did not confirm"):
        driver.nodes["p000"].share_keys(without)
    other_nonce = dataclasses.replace(confirmations[7], nonce=os.urandom(32))
    altered = ConfirmationSet(
        fed.job_id, fed.round, (*confirmations[:7], other_nonce, *confirmations[8:])
    )
    with pytest.raises(SecAggTamperError, match="does not open the commitment"):
        driver.nodes["p001"].share_keys(altered)


# --- a corrupt party's bad share -----------------------------------------------------------


def test_a_wrong_share_is_caught_before_any_sum_is_returned() -> None:
    fed = complete(5)
    driver, survivors = masked_up_to_signing(fed)
    request = driver.sign(survivors)
    server = driver.server
    for p in fed.names:
        response = driver.nodes[p].unmask(request)
        if p == "p000":  # a corrupt party alters its share of p001's self mask
            shares = tuple(
                (o, (int.from_bytes(s, "big") ^ 1).to_bytes(66, "big")) if o == "p001" else (o, s)
                for o, s in response.self_mask_shares
            )
            response = dataclasses.replace(response, self_mask_shares=shares)
        server.receive_unmask_response(response)
    with pytest.raises(SecAggTamperError, match="p001"):
        server.result()


def test_a_round_restarted_after_a_crash_gives_a_lying_coordinator_only_sums() -> None:
    """Attempt 1 completes honestly, so the coordinator reconstructs p005's self mask. It
    crashes; on resume the round starts again around the same inputs with fresh sessions
    (fresh keys, as every node does when asked for a round again), and this time the
    coordinator claims p005 dropped, so it reconstructs p005's pairwise key. Holding one
    secret of each kind, but from different attempts, it can strip neither attempt's masked
    input down to p005's input: it learns the sums, nothing more."""
    fed = complete(6)  # t = 4 of 6 holders
    p = fed.params
    first = RecordingServer(fed.params, fed.roster_keys, MODEL_HASH)
    driver1, honest = masked_up_to_signing(fed, server=first)
    total1 = driver1.unmask(driver1.sign(honest))
    assert np.array_equal(total1.astype(np.uint64), fed.expected_sum(driver1.inputs, fed.names))
    b_shares = [
        shamir.Share.from_bytes(p.share_x(r.sender), share)
        for r in first.view if isinstance(r, UnmaskResponse)
        for owner, share in r.self_mask_shares if owner == "p005"
    ]  # fmt: skip
    b_005 = shamir.reconstruct(b_shares, 4)
    second = LyingServer(fed.params, fed.roster_keys, MODEL_HASH, claim_dropped={"p005"})
    driver2, lie = masked_up_to_signing(fed, server=second)
    assert driver2.inputs["p005"].tobytes() == driver1.inputs["p005"].tobytes()
    total2 = driver2.unmask(driver2.sign(lie))
    assert np.array_equal(total2.astype(np.uint64), fed.expected_sum(driver2.inputs, fed.names[:5]))
    s_shares = [
        shamir.Share.from_bytes(p.share_x(r.sender), share)
        for r in second.view if isinstance(r, UnmaskResponse)
        for owner, share in r.key_shares if owner == "p005"
    ]  # fmt: skip
    s_005 = X25519PrivateKey.from_private_bytes(shamir.reconstruct(s_shares, 4))

    def strip(server: RecordingServer, key: X25519PrivateKey) -> np.ndarray:
        """p005's masked input of that attempt, minus attempt 1's self mask and the
        pairwise masks computed from ``key`` and that attempt's advertised peer keys."""
        ads = {m.party: m for m in server.view if hasattr(m, "s_public") and hasattr(m, "party")}
        (masked,) = [m.values for m in server.view
                     if isinstance(m, MaskedInput) and m.sender == "p005"]  # fmt: skip
        masks = [(self_mask_seed(b_005, fed.job_id, fed.round, "p005"), -1)]
        for peer in fed.names[:5]:
            public = X25519PublicKey.from_public_bytes(ads[peer].s_public)
            seed = pairwise_seed(key, public, fed.job_id, fed.round, peer, "p005")
            masks.append((seed, -pairwise_sign(p.index("p005"), p.index(peer))))
        return add_masks(masked, masks, fed.ring_bits)

    x_005 = driver1.inputs["p005"]
    # Had the restarted round reused attempt 1's keys, the two secrets would unmask p005:
    old_key = driver1.nodes["p005"]._s_key
    assert np.array_equal(strip(first, old_key), x_005)
    # With fresh keys per attempt they unmask neither attempt.
    for residual in (strip(first, s_005), strip(second, s_005)):
        assert np.mean(residual == x_005) < 0.01
        assert abs(float(residual.mean()) / 2**fed.ring_bits - 0.5) < 0.05
