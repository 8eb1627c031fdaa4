"""The synthetic site's page catalogue: a small electronics-and-home shop with a blog and help.

Deterministic and seed-free: the same 170-odd pages every time, with titles, descriptions and
categories written so that semantic similarity means something (a blog post about noise
cancelling sits near the headphones, not near the coffee grinders).
"""

import polars as pl

from ubap_assets.core.schema import PAGES_SCHEMA

# category -> (products: (name, what it is, selling points), blog post titles)
_CATEGORIES: dict[str, dict[str, list]] = {
    "Laptops": {
        "products": [
            ("Aero 14 Ultrabook", "a 14-inch ultrabook", "1.1 kg aluminium body, 18-hour battery"),
            ("Forge 16 Pro", "a 16-inch performance laptop", "8-core processor, 32 GB RAM"),
            ("Nimbus 13 Air", "a fanless 13-inch laptop", "silent design and all-day battery"),
            ("Titan 17 Workstation", "a 17-inch mobile workstation", "pro graphics card"),
            ("Swift 15 Student", "an affordable 15-inch laptop", "for study and streaming"),
            ("Flip 14 Convertible", "a 2-in-1 touchscreen laptop", "pen support, 360° hinge"),
            ("Core 15 Business", "a business laptop", "fingerprint reader, spill-proof keys"),
            ("Pixel 13 Creator", "a creator laptop", "colour-accurate OLED display"),
            ("Volt 14 Gaming", "a compact gaming laptop", "165 Hz screen, RGB keyboard"),
            ("Slate 12 Mini", "a small travel laptop", "weighs under a kilogram"),
            ("Laptop Sleeve 14", "a padded laptop sleeve", "water-resistant felt"),
            ("USB-C Dock 9-in-1", "a laptop docking station", "dual HDMI, 100 W charging"),
        ],
        "blog": [
            "How to choose a laptop for university",
            "Ultrabook or gaming laptop: what you really need",
            "Making your laptop battery last longer",
            "OLED laptop screens explained",
        ],
    },
    "Headphones": {
        "products": [
            ("Quiet 700 ANC", "over-ear noise cancelling headphones", "30-hour battery"),
            ("Pulse Buds Pro", "true wireless earbuds", "active noise cancellation"),
            ("Studio M50 Monitor", "wired studio headphones", "flat response for mixing"),
            ("Run Buds Sport", "sweat-proof sport earbuds", "secure ear hooks"),
            ("Bass 500 Wireless", "bass-heavy wireless headphones", "fold-flat design"),
            ("Air Open Earbuds", "open-ear earbuds", "hear traffic while you run"),
            ("Kids Safe Headphones", "volume-limited kids' headphones", "85 dB limit"),
            ("Gamer 7.1 Headset", "a surround gaming headset", "detachable boom mic"),
            ("Travel ANC Earbuds", "compact noise cancelling earbuds", "for flights"),
            ("Hi-Fi Open Back", "open-back audiophile headphones", "wide soundstage"),
            ("Headphone Stand Oak", "a wooden headphone stand", "solid oak, cable hook"),
            ("Bluetooth Transmitter", "a Bluetooth audio transmitter", "for in-flight TV"),
        ],
        "blog": [
            "Noise cancelling headphones compared",
            "Earbuds for running: fit, sweat and safety",
            "What audiophiles mean by soundstage",
            "Best headphones for long flights",
        ],
    },
    "Cameras": {
        "products": [
            ("Lumen X Mirrorless", "a full-frame mirrorless camera", "24 MP, in-body stabiliser"),
            ("Snap 20 Compact", "a pocket compact camera", "20x optical zoom"),
            ("Action 4K Cam", "a rugged action camera", "waterproof to 10 m, 4K60"),
            ("Vlog Kit Pro", "a vlogging camera kit", "flip screen and shotgun mic"),
            ("Prime 50mm f/1.8", "a fast prime lens", "creamy portrait bokeh"),
            ("Zoom 24-105mm", "an all-round zoom lens", "weather sealed"),
            ("Instant Mini Camera", "an instant film camera", "prints credit-card photos"),
            ("Drone Air 3", "a camera drone", "4K gimbal, 40-minute flights"),
            ("Tripod Carbon", "a carbon-fibre travel tripod", "1.2 kg, ball head"),
            ("Camera Backpack 20L", "a camera backpack", "padded dividers, side access"),
            ("SD Card 256GB", "a fast SD memory card", "V90 for 8K video"),
            ("Ring Light 18in", "an LED ring light", "adjustable colour temperature"),
        ],
        "blog": [
            "Mirrorless vs compact cameras for travel",
            "A beginner's guide to aperture and bokeh",
            "Shooting 4K video on an action camera",
            "How to start a vlog with simple gear",
        ],
    },
    "Smart Home": {
        "products": [
            ("Hub One Smart Speaker", "a smart speaker with voice assistant", "room-filling sound"),
            ("Glow Smart Bulb 4-pack", "colour smart bulbs", "schedules and scenes"),
            ("Guard Video Doorbell", "a video doorbell", "HD video, night vision"),
            ("Therma Smart Thermostat", "a learning thermostat", "cuts heating bills"),
            ("Plug Mini Smart Plug", "a Wi-Fi smart plug", "energy monitoring"),
            ("Sentinel Indoor Camera", "an indoor security camera", "motion alerts"),
            ("Lock Pro Smart Lock", "a keyless smart lock", "fingerprint and app"),
            ("Robo Vac S8", "a robot vacuum", "lidar mapping, auto-empty"),
            ("Air Purifier Smart", "a connected air purifier", "HEPA filter, app control"),
            ("Leak Sensor Kit", "water leak sensors", "alerts before damage"),
            ("Mesh Wi-Fi 3-pack", "a mesh Wi-Fi system", "whole-home coverage"),
            ("Smart Blinds Motor", "a motorised blind kit", "sunrise schedules"),
        ],
        "blog": [
            "Setting up your first smart home",
            "Do smart thermostats really save money?",
            "Keeping smart cameras private and secure",
            "Mesh Wi-Fi explained for big houses",
        ],
    },
    "Fitness": {
        "products": [
            ("Pulse Fitness Tracker", "a fitness tracker band", "heart rate and sleep"),
            ("Stride GPS Watch", "a GPS running watch", "training load, maps"),
            ("Smart Scale Body", "a body composition scale", "syncs with the app"),
            ("Adjustable Dumbbells", "adjustable dumbbells", "2 to 24 kg in seconds"),
            ("Yoga Mat Pro", "a non-slip yoga mat", "6 mm natural rubber"),
            ("Spin Bike Connect", "a connected indoor bike", "live classes"),
            ("Massage Gun Mini", "a percussion massage gun", "for recovery"),
            ("Resistance Bands Set", "resistance bands", "five levels with handles"),
            ("Jump Rope Smart", "a counting jump rope", "tracks calories"),
            ("Foam Roller Grid", "a textured foam roller", "deep tissue release"),
            ("Rowing Machine Fold", "a folding rowing machine", "magnetic resistance"),
            ("Sports Bottle Insulated", "an insulated sports bottle", "cold for 24 hours"),
        ],
        "blog": [
            "Fitness trackers: what the numbers mean",
            "A home gym in a small flat",
            "Training for your first 10k with a GPS watch",
            "Recovery tools that actually help",
        ],
    },
    "Kitchen": {
        "products": [
            ("Brew Master Espresso", "an espresso machine", "15-bar pump, milk frother"),
            ("Burr Grinder Precision", "a conical burr coffee grinder", "40 grind settings"),
            ("Air Fryer XL", "a large air fryer", "crispy food with little oil"),
            ("Blender Pro 1200", "a high-speed blender", "smoothies and soups"),
            ("Smart Kettle Temp", "a temperature-control kettle", "for green tea and pour-over"),
            ("Chef Knife Damascus", "a Damascus steel chef's knife", "20 cm blade"),
            ("Cast Iron Skillet", "a pre-seasoned cast iron pan", "oven safe"),
            ("Sous Vide Stick", "a sous vide cooker", "precise water bath cooking"),
            ("Stand Mixer Classic", "a stand mixer", "dough hook and whisk"),
            ("Pour-Over Coffee Set", "a pour-over coffee kit", "glass dripper and filters"),
            ("Food Storage Glass", "glass food containers", "leak-proof lids"),
            ("Digital Kitchen Scale", "a digital kitchen scale", "0.1 g precision"),
        ],
        "blog": [
            "Espresso at home: a beginner's guide",
            "Why a burr grinder changes your coffee",
            "Air fryer recipes for busy weeknights",
            "Caring for cast iron pans",
        ],
    },
    "Gaming": {
        "products": [
            ("Console X Series", "a home games console", "4K gaming at 120 fps"),
            ("Handheld Switch Lite", "a handheld games console", "play anywhere"),
            ("Pro Wireless Controller", "a pro game controller", "back paddles, trigger stops"),
            ("Mechanical Keyboard RGB", "a mechanical gaming keyboard", "hot-swap switches"),
            ("Esports Mouse Light", "a lightweight gaming mouse", "58 g, 26k DPI sensor"),
            ("Gaming Monitor 27 QHD", "a 27-inch gaming monitor", "165 Hz, 1 ms"),
            ("Racing Wheel Force", "a force-feedback racing wheel", "with pedals"),
            ("VR Headset Quest", "a standalone VR headset", "no PC needed"),
            ("Gaming Chair Ergo", "an ergonomic gaming chair", "lumbar support"),
            ("Capture Card 4K", "a game capture card", "stream in 4K"),
            ("Controller Charging Dock", "a controller charging dock", "charges two at once"),
            ("Game Pass 12 Months", "a 12-month game subscription", "hundreds of games"),
        ],
        "blog": [
            "Choosing a gaming monitor: refresh rate vs resolution",
            "Mechanical keyboard switches explained",
            "Getting started with VR gaming",
            "Set up a streaming rig on a budget",
        ],
    },
    "Books": {
        "products": [
            ("The Data Detective", "a book on thinking with statistics", "paperback"),
            ("Deep Work", "a book about focus and productivity", "hardback"),
            ("Atomic Habits", "a book on building good habits", "paperback"),
            ("The Pragmatic Programmer", "a classic software engineering book", "20th edition"),
            ("Salt Fat Acid Heat", "a cookbook about the elements of cooking", "illustrated"),
            ("Born to Run", "a book about ultra running", "paperback"),
            ("The Design of Everyday Things", "a book on product design", "revised edition"),
            ("Sapiens", "a brief history of humankind", "paperback"),
            ("Project Hail Mary", "a science fiction novel", "hardback"),
            ("The Photographer's Eye", "a book on photo composition", "illustrated"),
            ("Clean Code", "a book on writing readable code", "paperback"),
            ("E-Reader Paper 7", "an e-ink e-reader", "warm light, waterproof"),
        ],
        "blog": [
            "Ten books every product manager should read",
            "E-readers vs paper books",
            "Best books for aspiring photographers",
            "Our staff's favourite science fiction",
        ],
    },
}

_HELP = [
    ("Shipping and delivery times", "When your order arrives and how to track the parcel."),
    ("Returns and refunds", "How to return an item within 30 days and get your money back."),
    ("Payment methods", "Cards, wallets and instalments we accept at checkout."),
    ("Order tracking", "Follow your parcel from our warehouse to your door."),
    ("Warranty claims", "How to claim repairs under the two-year warranty."),
    ("Account and password", "Reset your password, update your email and manage your account."),
    ("Promo codes and gift cards", "Redeem a discount code or gift card at checkout."),
    ("International orders", "Customs, duties and delivery outside the country."),
    ("Student discount", "Verify your student status for ten percent off."),
    ("Price match promise", "We match a lower price from a major retailer."),
    ("Product setup guides", "Step-by-step setup for smart home devices and cameras."),
    ("Contact customer support", "Chat, email or call our support team."),
    ("Cancel an order", "Cancel before dispatch from your account page."),
    ("Trade-in programme", "Trade in old laptops, phones and consoles for credit."),
    ("Privacy and cookies", "How we use your data and how to change your choices."),
]

_SITE = [
    (
        "home",
        "home",
        "Home",
        "Shop laptops, headphones, cameras, smart home, fitness, kitchen, "
        "gaming and books with free delivery and 30-day returns.",
    ),
    ("search", "search", "Search results", "Search the whole store by product, brand or topic."),
    (
        "pricing",
        "pricing",
        "Membership pricing",
        "Plus membership: free next-day delivery, "
        "extended warranty and member prices. Compare plans and yearly savings.",
    ),
    (
        "pricing",
        "pricing/business",
        "Business pricing",
        "Volume pricing, invoices and account "
        "managers for companies buying equipment for their teams.",
    ),
    ("cart", "cart", "Shopping cart", "Review the items in your basket before checkout."),
    ("checkout", "checkout", "Checkout", "Enter delivery details and pay securely."),
    (
        "checkout",
        "checkout/confirmation",
        "Order confirmation",
        "Thank you for your order: your receipt and delivery estimate.",
    ),
    (
        "about",
        "about",
        "About us",
        "An independent shop for well-made electronics and home goods since 2012.",
    ),
    (
        "deals",
        "deals",
        "Today's deals",
        "Limited-time discounts across every department, updated daily.",
    ),
    ("stores", "stores", "Store finder", "Find a store near you and book a demo."),
]

_PRICE_RANGE = {
    "Laptops": (450.0, 2600.0),
    "Headphones": (25.0, 450.0),
    "Cameras": (30.0, 2200.0),
    "Smart Home": (15.0, 600.0),
    "Fitness": (15.0, 1200.0),
    "Kitchen": (20.0, 700.0),
    "Gaming": (40.0, 600.0),
    "Books": (9.0, 140.0),
}


def _slug(text: str) -> str:
    keep = "".join(c.lower() if c.isalnum() else "-" for c in text)
    return "-".join(part for part in keep.split("-") if part)


def categories() -> list[str]:
    return list(_CATEGORIES)


def page_catalogue() -> pl.DataFrame:
    """One row per page: page_id, url, title, description, category, page_type, price."""
    rows: list[dict] = []

    def add(page_type: str, url: str, title: str, description: str, category: str, price=None):
        rows.append(
            {
                "page_id": f"p{len(rows):03d}",
                "url": "/" + url,
                "title": title,
                "description": description,
                "category": category,
                "page_type": page_type,
                "price": price,
            }
        )

    for page_type, url, title, description in _SITE:
        add(page_type, url, title, description, "Site")
    for category, content in _CATEGORIES.items():
        slug = _slug(category)
        add(
            "category",
            f"c/{slug}",
            f"{category}",
            f"Browse all {category.lower()}: compare models, read reviews and find deals.",
            category,
        )
        low, high = _PRICE_RANGE[category]
        n = len(content["products"])
        for i, (name, what, points) in enumerate(content["products"]):
            # Deterministic spread of prices across the category's range.
            price = round(low + (high - low) * ((i * 7) % n) / (n - 1), 2)
            add(
                "product",
                f"c/{slug}/{_slug(name)}",
                name,
                f"{name} is {what} in our {category.lower()} range: {points}. "
                f"Free delivery, 30-day returns and a two-year warranty.",
                category,
                price,
            )
        for title in content["blog"]:
            add(
                "blog",
                f"blog/{_slug(title)}",
                title,
                f"{title}: an in-depth {category.lower()} guide from our experts, with tips, "
                f"comparisons and the products we recommend.",
                category,
            )
    for title, description in _HELP:
        add("help", f"help/{_slug(title)}", title, description, "Help")
    return pl.DataFrame(rows, schema=PAGES_SCHEMA)
