//! The demo catalog seeded into an empty database in dev mode (and by `wxshop seed-demo`): five categories,
//! thirty products, each with one to four SKUs. Deterministic, so tests and the README tour can rely on it.

use serde_json::json;

use crate::catalog::store::{self, NewCategory, NewProduct, NewSku};
use crate::db::Bounded;
use crate::db::{now_ms, Db};

/// (category, icon, products: (title, subtitle, base price in fen, SKU axis, SKU options)).
type DemoProduct = (&'static str, &'static str, i64, &'static str, &'static [&'static str]);

const DEMO: &[(&str, &str, &[DemoProduct])] = &[
    (
        "茶饮",
        "tea",
        &[
            ("西湖龙井 明前特级", "2026 新茶 · 250g 罐装", 26800, "规格", &["250g", "500g"]),
            ("云南普洱 熟茶饼", "勐海七年陈 · 357g", 15800, "规格", &["357g"]),
            ("武夷山大红袍", "岩茶 · 中火焙", 19900, "规格", &["125g", "250g"]),
            ("茉莉花茶", "福州七窨 · 袋泡", 3900, "规格", &["20 包", "50 包"]),
            ("白毫银针", "福鼎白茶 · 2023", 32800, "规格", &["100g"]),
            ("冷泡乌龙", "冻顶乌龙 · 冷泡装", 5900, "口味", &["原味", "蜜桃", "白桃"]),
        ],
    ),
    (
        "零食",
        "snack",
        &[
            ("每日坚果", "七种坚果 · 30 袋", 12900, "规格", &["15 袋", "30 袋"]),
            ("手撕牛肉干", "内蒙古风干 · 250g", 6900, "口味", &["原味", "香辣", "孜然"]),
            ("芒果干", "泰国进口 · 无添加", 2990, "规格", &["100g", "500g"]),
            ("海苔脆片", "儿童零食 · 12 包", 2590, "口味", &["原味", "芝麻"]),
            ("蛋黄酥", "现烤 · 6 枚", 3600, "规格", &["6 枚", "12 枚"]),
            ("黑巧克力", "72% 可可 · 100g", 2800, "规格", &["单块", "三块装"]),
        ],
    ),
    (
        "服饰",
        "apparel",
        &[
            ("纯棉白 T 恤", "新疆长绒棉 · 宽松", 9900, "尺码", &["S", "M", "L", "XL"]),
            ("防风连帽外套", "轻量 · 可收纳", 39900, "尺码", &["M", "L", "XL"]),
            ("羊毛围巾", "澳洲美利奴 · 180cm", 19900, "颜色", &["燕麦", "藏青", "酒红"]),
            ("帆布托特包", "12 安加厚帆布", 7900, "颜色", &["米白", "黑色"]),
            ("运动短袜", "五双装 · 抗菌", 3900, "尺码", &["M", "L"]),
            ("针织毛线帽", "冬季保暖", 5900, "颜色", &["灰色", "黑色", "驼色"]),
        ],
    ),
    (
        "家居",
        "home",
        &[
            ("手冲咖啡壶", "细口 · 600ml", 15900, "颜色", &["银色", "哑光黑"]),
            ("陶瓷马克杯", "景德镇 · 350ml", 4900, "颜色", &["月白", "天青", "豆绿"]),
            ("香薰蜡烛", "大豆蜡 · 40 小时", 8900, "香型", &["雪松", "白茶", "无花果"]),
            ("亚麻桌布", "140×200cm", 12900, "颜色", &["原麻", "浅灰"]),
            ("竹制收纳盒", "三件套", 6900, "规格", &["三件套"]),
            ("记忆棉枕头", "慢回弹 · 护颈", 19900, "规格", &["标准", "加高"]),
        ],
    ),
    (
        "数码",
        "digital",
        &[
            ("无线蓝牙耳机", "主动降噪 · 30 小时续航", 49900, "颜色", &["白色", "黑色"]),
            ("氮化镓充电器", "65W · 三口", 14900, "规格", &["65W", "100W"]),
            ("机械键盘", "87 键 · 热插拔", 39900, "轴体", &["红轴", "茶轴", "青轴"]),
            ("移动电源", "20000mAh · 快充", 12900, "颜色", &["白色", "黑色"]),
            ("数据线", "USB-C · 编织 · 1.5m", 2900, "规格", &["1m", "1.5m", "2m"]),
            ("手机支架", "铝合金 · 可折叠", 3900, "颜色", &["银色", "深空灰"]),
        ],
    ),
];

/// Seeds the demo catalog if the catalog is empty. Returns whether it seeded.
pub async fn seed_demo_catalog(db: &Db) -> anyhow::Result<bool> {
    let mut tx = db.begin_write().await?;
    if store::count_categories_locked(&mut *tx, db.dialect).await? > 0 {
        return Ok(false);
    }
    let now = now_ms();
    let mut image = 0;
    for (c, (category, icon, products)) in DEMO.iter().enumerate() {
        let icon_url = format!("https://picsum.photos/seed/wxshop-{icon}/96/96");
        let category_id = store::insert_category(
            &mut tx,
            &NewCategory { parent_id: None, name: category, icon_url: &icon_url, sort_order: (c as i64 + 1) * 10 },
            now,
        )
        .await?;
        for (title, subtitle, base_price, axis, options) in products.iter() {
            image += 1;
            let images: Vec<String> =
                (1..=3).map(|n| format!("https://picsum.photos/seed/wxshop-{image}-{n}/750/750")).collect();
            let description = format!("{title}。{subtitle}。演示商品，用于开发与测试。");
            let product_id = store::insert_product(
                &mut tx,
                &NewProduct {
                    category_id,
                    title,
                    subtitle,
                    description: &description,
                    image_urls: &serde_json::to_string(&images)?,
                },
                now,
            )
            .await?;
            for (i, option) in options.iter().enumerate() {
                let i = i as i64;
                // Larger options cost more; stock varies so some SKUs run low.
                let price_fen = base_price + i * base_price / 2;
                let stock = 20 + ((image * 37 + i * 53) % 180);
                let attributes = json!({ (*axis): option }).to_string();
                let sku_title = format!("{title} {option}");
                store::insert_sku(
                    &mut tx,
                    &NewSku { product_id, title: &sku_title, price_fen, stock, attributes: &attributes },
                    now,
                )
                .await?;
            }
        }
    }
    tx.commit().bounded().await?;
    Ok(true)
}
