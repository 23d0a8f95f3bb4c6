//! The coalescing planner: a device's points into the fewest reads. Pure.
//!
//! Points of one table are sorted by address and joined while the read
//! stays within the protocol's limits (125 registers, 2000 bits) and the
//! hole between two points is at most the device's `max_gap` registers (or
//! 16 × as many bits: the same bytes on the wire). Each request costs a
//! turnaround and two frame headers, so on a slow line reading a few
//! unwanted registers is cheaper than asking twice. Overlapping points (a
//! bit of a status register next to the register itself) share a read.

use crate::config::{MAX_READ_BITS, MAX_READ_REGISTERS, PointConfig, Table};

/// One request of a poll.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Read {
    /// The table read.
    pub table: Table,
    /// First address.
    pub start: u16,
    /// Registers or bits.
    pub count: u16,
    /// Indices of the points it carries.
    pub points: Vec<usize>,
}

/// The reads that fetch every point of `points`, in table and address order.
pub fn plan(points: &[PointConfig], max_gap: u16) -> Vec<Read> {
    let mut order: Vec<usize> = (0..points.len()).collect();
    order.sort_by_key(|&i| (points[i].table, points[i].address, points[i].span()));
    let mut reads: Vec<Read> = Vec::new();
    for i in order {
        let p = &points[i];
        let (start, end) = (
            u32::from(p.address),
            u32::from(p.address) + u32::from(p.span()),
        );
        let (limit, gap) = if p.table.is_bits() {
            (u32::from(MAX_READ_BITS), u32::from(max_gap) * 16)
        } else {
            (u32::from(MAX_READ_REGISTERS), u32::from(max_gap))
        };
        if let Some(read) = reads.last_mut()
            && read.table == p.table
        {
            let read_end = u32::from(read.start) + u32::from(read.count);
            let joined_end = read_end.max(end);
            if start <= read_end + gap && joined_end - u32::from(read.start) <= limit {
                read.count = (joined_end - u32::from(read.start)) as u16;
                read.points.push(i);
                continue;
            }
        }
        reads.push(Read {
            table: p.table,
            start: p.address,
            count: (end - start) as u16,
            points: vec![i],
        });
    }
    reads
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::register::PointType;

    fn point(table: Table, address: u16, kind: PointType, length: Option<u16>) -> PointConfig {
        PointConfig {
            name: format!("p{address}"),
            table,
            address,
            kind: Some(kind),
            length,
            order: Default::default(),
            bit: None,
            scale: 1.0,
            offset: 0.0,
            unit: std::string::String::new(),
            deadband: 0.0,
            writable: false,
            write_function: Default::default(),
        }
    }

    /// (table, start, count) of each read.
    fn shape(reads: &[Read]) -> Vec<(Table, u16, u16)> {
        reads.iter().map(|r| (r.table, r.start, r.count)).collect()
    }

    use PointType::*;
    use Table::*;

    #[test]
    fn adjacent_points_make_one_read() {
        let points = [
            point(Holding, 4, F32, None),
            point(Holding, 0, U32, None),
            point(Holding, 2, U16, None),
            point(Holding, 3, I16, None),
        ];
        let reads = plan(&points, 0);
        assert_eq!(shape(&reads), [(Holding, 0, 6)]);
        assert_eq!(reads[0].points, [1, 2, 3, 0]);
    }

    #[test]
    fn holes_up_to_the_gap_are_read_through() {
        let points = [point(Input, 0, U16, None), point(Input, 5, U16, None)];
        assert_eq!(shape(&plan(&points, 4)), [(Input, 0, 6)]);
        assert_eq!(shape(&plan(&points, 3)), [(Input, 0, 1), (Input, 5, 1)]);
    }

    #[test]
    fn tables_are_never_mixed() {
        let points = [
            point(Holding, 0, U16, None),
            point(Input, 1, U16, None),
            point(Coil, 0, Bool, None),
            point(DiscreteInput, 0, Bool, None),
        ];
        assert_eq!(
            shape(&plan(&points, 100)),
            [
                (Coil, 0, 1),
                (DiscreteInput, 0, 1),
                (Holding, 0, 1),
                (Input, 1, 1)
            ]
        );
    }

    #[test]
    fn reads_stay_within_125_registers() {
        // 0..=124 is one read of exactly 125; 125 starts the next.
        let points = [
            point(Holding, 0, U16, None),
            point(Holding, 123, U16, None),
            point(Holding, 124, U16, None),
            point(Holding, 125, U16, None),
        ];
        assert_eq!(
            shape(&plan(&points, 200)),
            [(Holding, 0, 125), (Holding, 125, 1)]
        );
        // A 4-register value that would cross 125 starts a read of its own.
        let points = [point(Holding, 0, U16, None), point(Holding, 122, U64, None)];
        assert_eq!(
            shape(&plan(&points, 200)),
            [(Holding, 0, 1), (Holding, 122, 4)]
        );
        let longest = [point(Holding, 10, String, Some(125))];
        assert_eq!(shape(&plan(&longest, 0)), [(Holding, 10, 125)]);
    }

    #[test]
    fn bits_stay_within_2000_and_their_gap_is_sixteen_per_register() {
        let points = [
            point(Coil, 0, Bool, None),
            point(Coil, 1999, Bool, None),
            point(Coil, 2000, Bool, None),
        ];
        assert_eq!(
            shape(&plan(&points, 200)),
            [(Coil, 0, 2000), (Coil, 2000, 1)]
        );
        let points = [point(Coil, 0, Bool, None), point(Coil, 17, Bool, None)];
        assert_eq!(shape(&plan(&points, 1)), [(Coil, 0, 18)]);
        let points = [point(Coil, 0, Bool, None), point(Coil, 18, Bool, None)];
        assert_eq!(shape(&plan(&points, 1)), [(Coil, 0, 1), (Coil, 18, 1)]);
    }

    #[test]
    fn overlapping_points_share_a_read() {
        let mut status_bit = point(Holding, 10, Bool, None);
        status_bit.bit = Some(3);
        let points = [point(Holding, 10, U16, None), status_bit];
        let reads = plan(&points, 0);
        assert_eq!(shape(&reads), [(Holding, 10, 1)]);
        assert_eq!(reads[0].points.len(), 2);
    }
}
