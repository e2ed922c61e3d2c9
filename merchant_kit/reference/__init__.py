"""The reference merchant: a power-bank rental service on merchant_kit, with the driver API.

    from merchant_kit.reference import create_app, LiveMerchant
    with LiveMerchant({"MERCHANT_JSON": ".payscore/merchant.json",
                       "ENABLE_DRIVER": True}) as m:
        requests.post(m.driver_url + "/rentals", json={"openid": "o_1", "deposit": 9900})

Built only on the kit's public API; it never imports the sandbox.
"""

from merchant_kit.reference.app import ReferenceMerchant, create_app
from merchant_kit.reference.bugs import BUGS
from merchant_kit.reference.server import LiveMerchant
from merchant_kit.reference.states import FINAL, MERCHANT_STATES

__all__ = ["BUGS", "FINAL", "MERCHANT_STATES", "LiveMerchant", "ReferenceMerchant",
           "create_app"]
