-- Reference copy of segmentation.segmentations (latest definition: migration 0010).
-- Editing this file changes nothing in the database: views change only by migration.
create view segmentation.segmentations with (security_barrier = true) as
-- grain: one row per segmentation
with latest as (
    select distinct on (runs.segmentation_id)
        runs.segmentation_id,
        runs.run_id,
        runs.published_at,
        runs.n_customers,
        runs.k,
        runs.features
    from segmentation_internal.runs as runs
    where runs.status = 'published'
    order by runs.segmentation_id, runs.published_at desc, runs.run_id desc
)
select
    segmentations.name as segmentation,
    case when segmentations.name = 'default' then 'segmentation' else 'segments_' || segmentations.name end as schema_name,
    segmentations.version,
    coalesce(latest.features, array(
        select jsonb_array_elements_text(segmentations.declaration -> 'features')
    )) as features,
    case
        when segmentations.declaration ->> 'source' is not null then 'table ' || (segmentations.declaration ->> 'source')
        when segmentations.declaration -> 'dataset' ? 'derived' then 'orders'
        else 'customer export'
    end as input,
    latest.run_id as last_published_run_id,
    latest.published_at as last_published_at,
    latest.k,
    latest.n_customers as customer_count,
    segmentations.created_at
from segmentation_internal.segmentations as segmentations
left join latest
    on latest.segmentation_id = segmentations.segmentation_id
order by segmentations.name;
